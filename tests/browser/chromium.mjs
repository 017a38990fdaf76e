// Debian's Chromium as the browser tests drive it (drive.mjs, operator.mjs): the new headless
// mode, WebGPU through SwiftShader, no background traffic, a throwaway profile.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

/** Starts Chromium; returns its context and the profile directory to remove afterwards. */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "ember-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.EMBER_CHROMIUM ?? "/usr/bin/chromium",
    headless: false, // the flags below choose the new headless mode themselves
    args: [
      "--headless=new",
      "--no-sandbox",
      "--enable-unsafe-webgpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
    viewport: { width: 1100, height: 820 },
    timeout: 60_000,
  });
  return { context, profile };
}
