// Drives the demo page in Debian's Chromium for tests/e2e/browser.rs: loads every model on each
// backend, runs the cases and bad inputs it is given, times load and inference, uses the page as
// a person would (draws a digit, submits the form) and takes a screenshot.
//
// Usage: node drive.mjs <job.json>; prints one JSON report on stdout.
// job: {base, backends, cases: [{model, name, input}], invalid: [{model, name, input}],
//       fixtures: [{name, dir, input}], repeats, screenshot}
// A fixture is a model version outside the bundled ones (a spec and graph in `dir`): the page
// fetches it from /demo/fixtures/<name>/ and the files come from `dir`; it is loaded on `auto`
// and `webgpu`, and predicts `input` where it loads.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { launch } from "./chromium.mjs";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { context, profile } = await launch();
const report = { console: [], loads: [], predictions: [], invalid: [], timings: [], fixtures: [] };
try {
  await context.route("**/demo/fixtures/**", (route) => {
    const [name, file] = new URL(route.request().url()).pathname.split("/").slice(-2);
    const fixture = (job.fixtures ?? []).find((f) => f.name === name);
    const path = fixture && join(fixture.dir, file);
    return path && existsSync(path) ? route.fulfill({ path }) : route.fulfill({ status: 404 });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  // Fixtures have no reference.json (the self-check's optional extra inputs): their 404 is no
  // error of the page's.
  const expected404 = (m) => /\/demo\/fixtures\/[^/]+\/reference\.json$/.test(m.location().url);
  page.on("console", (m) => m.type() === "error" && !expected404(m) && report.console.push(m.text()));
  page.on("pageerror", (e) => report.console.push(String(e)));
  await page.goto(`${job.base}/demo/`);
  await page.evaluate(() => window.ember.ready);

  for (const backend of job.backends) {
    for (const model of [...new Set(job.cases.map((c) => c.model))]) {
      report.loads.push(
        await page.evaluate(
          async ({ model, backend }) => {
            const started = performance.now();
            try {
              const m = await window.ember.model(model, backend);
              return {
                model, backend, ran: m.backend, reason: m.backendReason,
                load_ms: m.loadMs, page_ms: performance.now() - started,
              };
            } catch (error) {
              return { model, backend, error: error instanceof Error ? String(error) : error };
            }
          },
          { model, backend },
        ),
      );
    }
    for (const c of job.cases) {
      const result = await page.evaluate(
        ({ c, backend }) => window.ember.predict(c.model, backend, c.input), { c, backend });
      report.predictions.push({ model: c.model, name: c.name, backend, result });
    }
    for (const c of job.invalid) {
      const result = await page.evaluate(
        ({ c, backend }) => window.ember.predict(c.model, backend, c.input), { c, backend });
      report.invalid.push({ model: c.model, name: c.name, backend, result });
    }
    for (const model of [...new Set(job.cases.map((c) => c.model))]) {
      if (report.loads.some((l) => l.model === model && l.backend === backend && l.error)) continue;
      const input = job.cases.find((c) => c.model === model).input;
      report.timings.push(
        await page.evaluate(
          async ({ model, backend, input, repeats }) => {
            const m = await window.ember.model(model, backend);
            await m.predict(input); // warm-up
            // One clock reading around all runs: the page's clock ticks in 0.1 ms steps.
            const started = performance.now();
            for (let i = 0; i < repeats; i++) await m.predict(input);
            const mean_ms = (performance.now() - started) / repeats;
            return { model, backend, ran: m.backend, mean_ms, runs: repeats };
          },
          { model, backend, input, repeats: job.repeats },
        ),
      );
    }
  }

  for (const fixture of job.fixtures ?? []) {
    for (const backend of ["auto", "webgpu"]) {
      report.fixtures.push({
        name: fixture.name,
        backend,
        ...(await page.evaluate(
          async ({ name, backend, input }) => {
            const { Model } = await import("./pkg/ember_browser.js");
            const base = `fixtures/${name}/`;
            try {
              const m = await Model.load(base + "model.json", base + "model.onnx", { backend });
              return { ran: m.backend, reason: m.backendReason, reply: await m.predict(input) };
            } catch (error) {
              return { error: error instanceof Error ? String(error) : error };
            }
          },
          { name: fixture.name, backend, input: fixture.input },
        )),
      });
    }
  }

  // The page as a person uses it: draw a "1" on the pad, submit the credit form as filled.
  await page.check('input[name="backend"][value="auto"]');
  const pad = await page.locator("#pad").boundingBox();
  await page.mouse.move(pad.x + pad.width * 0.5, pad.y + pad.height * 0.15);
  await page.mouse.down();
  await page.mouse.move(pad.x + pad.width * 0.5, pad.y + pad.height * 0.85, { steps: 12 });
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelectorAll("#digit-result .bars li").length > 0);
  await page.click("#credit-form button");
  await page.waitForFunction(() => document.querySelector("#credit-result .meta").textContent !== "");
  report.page = await page.evaluate(() => ({
    title: document.title,
    status: document.getElementById("status").textContent,
    digit: document.querySelector("#digit-result .label").textContent,
    bars: document.querySelectorAll("#digit-result .bars li").length,
    digitMeta: document.querySelector("#digit-result .meta").textContent,
    credit: document.querySelector("#credit-result .label").textContent,
    creditMeta: document.querySelector("#credit-result .meta").textContent,
    formFields: document.querySelectorAll("#credit-form input").length,
  }));
  if (job.screenshot) await page.screenshot({ path: job.screenshot, fullPage: true });
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(report));
