// Drives the operator page (/-/) in Debian's Chromium for tests/e2e/operator.rs: waits for its
// first render, reads back what it shows (the totals per model version, the charts, the drift
// panels, the live quality rows, the decisions and where their audit links lead) and takes a screenshot.
//
// Usage: node operator.mjs <job.json>; prints one JSON report on stdout.
// job: {base, screenshot?, token?}: with a token, the page must first ask for it.
import { readFileSync, rmSync } from "node:fs";
import { launch } from "./chromium.mjs";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { context, profile } = await launch();
const report = { console: [], requests: [] };
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => m.type() === "error" && report.console.push(m.text()));
  page.on("pageerror", (e) => report.console.push(String(e)));
  page.on("request", (r) => report.requests.push(r.url()));
  await page.goto(`${job.base}/-/`);
  if (job.token) {
    await page.waitForSelector("#login:not([hidden])", { timeout: 30_000 });
    report.asked_for_token = true;
    report.status_before_token = await page.textContent("#status");
    await page.fill("#token", job.token);
    await page.click("#login button");
  }
  await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
  Object.assign(report, await page.evaluate(() => ({
    models: [...document.querySelectorAll("#models tbody tr")].map((tr) =>
      [...tr.children].map((td) => td.textContent)),
    totals: Object.fromEntries([...document.querySelectorAll("#totals tbody tr")].map((tr) => [
      tr.dataset.version,
      {
        count: Number(tr.querySelector("[data-field=count]").textContent),
        errors: Number(tr.querySelector("[data-field=errors]").textContent),
        cost: Number(tr.querySelector("[data-field=cost]").dataset.value),
      },
    ])),
    charts: [...document.querySelectorAll("[data-chart]")].map((c) => ({
      title: c.dataset.chart,
      canvases: c.querySelectorAll("canvas").length,
      legend: [...c.querySelectorAll(".u-legend .u-series .u-label")].map((l) => l.textContent),
    })),
    drift: [...document.querySelectorAll("[data-drift]")].map((d) => ({
      version: d.dataset.drift,
      drifted: d.dataset.drifted === "true",
      features: d.querySelectorAll(".bar").length,
    })),
    quality: Object.fromEntries([...document.querySelectorAll("#quality tbody tr")].map((tr) =>
      [tr.dataset.quality, [...tr.children].map((td) => td.textContent)])),
    audit_links: [...document.querySelectorAll("#decisions a")].map((a) => a.href),
  })));
  if (job.screenshot) await page.screenshot({ path: job.screenshot, fullPage: true });
  if (report.audit_links.length && job.token) {
    await page.click("#decisions a");
    await page.waitForSelector("#audit:not([hidden])", { timeout: 30_000 });
    report.audit = JSON.parse(await page.textContent("#audit-record"));
  } else if (report.audit_links.length) {
    // The audit record is bare JSON, whose tab asks for /favicon.ico: not the page's request.
    page.removeAllListeners("console");
    await page.click("#decisions a");
    report.audit = JSON.parse(await page.textContent("body"));
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(report));
