// The operator page: renders GET /-/api/overview (routing, the last hour per model version,
// drift, live quality, alerts, rollouts, recent decisions) and refreshes it every 15 s. Charts
// are uPlot's.
"use strict";

const REFRESH_MS = 15_000;
const COLORS = ["#d9772b", "#3b7dd8", "#4aa86a", "#9b59b6", "#c0392b", "#16a085"];
const charts = [];

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children.map((c) => (c instanceof Node ? c : document.createTextNode(c ?? ""))));
  return node;
};
const num = (value, digits) => el("td", { class: "num" }, Number(value).toFixed(digits));
const fill = (table, rows) => document.querySelector(`#${table} tbody`).replaceChildren(...rows);

function renderModels(models) {
  fill("models", models.map((m) => {
    const r = m.routing;
    const aliases = Object.entries(r.aliases ?? {}).map(([a, v]) => `${a} → ${v}`).join(", ");
    const split = (r.split ?? []).map((w) => `${w.version}: ${w.weight}%`).join(", ");
    return el("tr", { "data-model": m.name },
      el("td", {}, m.name), el("td", {}, m.versions.join(", ")), el("td", {}, m.stable ?? "—"),
      el("td", {}, aliases || "—"), el("td", {}, split || "—"),
      el("td", {}, r.shadow ?? "—"), el("td", {}, r.fallback ?? "—"));
  }));
}

// One chart: a series per model version, one point per minute with traffic (gaps stay gaps).
function chart(title, traffic, value) {
  const minutes = [...new Set(traffic.flatMap((t) => t.minutes.map((m) => m.group)))].sort();
  const xs = minutes.map((m) => Date.parse(m) / 1000);
  const series = traffic.map((t) => {
    const at = new Map(t.minutes.map((m) => [m.group, value(m)]));
    return minutes.map((m) => (at.has(m) ? at.get(m) : null));
  });
  const opts = {
    title,
    width: 520,
    height: 200,
    scales: { x: { time: true } },
    series: [{}, ...traffic.map((t, i) => ({
      label: `${t.model}/${t.version}`,
      stroke: COLORS[i % COLORS.length],
      width: 2,
      points: { show: true, size: 5 },
      spanGaps: false,
    }))],
  };
  const box = el("div", { class: "chart", "data-chart": title });
  charts.push(new uPlot(opts, [xs, ...series], box));
  return box;
}

function renderTraffic(traffic, currency) {
  charts.splice(0).forEach((c) => c.destroy());
  const latency = (m) => m.wall_p99_us / 1000;
  document.getElementById("charts").replaceChildren(
    chart("requests per minute", traffic, (m) => m.count),
    chart("p99 latency, ms", traffic, latency),
    chart("p50 latency, ms", traffic, (m) => m.wall_p50_us / 1000),
    chart("error rate, %", traffic, (m) => 100 * m.error_rate),
    chart(`cost per minute, ${currency}`, traffic, (m) => m.cost),
  );
  fill("totals", traffic.map((t) => {
    const s = t.totals;
    return el("tr", { "data-version": `${t.model}/${t.version}` },
      el("td", {}, `${t.model}/${t.version}`),
      el("td", { class: "num", "data-field": "count" }, String(s.count)),
      el("td", { class: "num", "data-field": "errors" }, String(s.errors)),
      num(100 * s.error_rate, 1), num(s.wall_p50_us / 1000, 3), num(s.wall_p99_us / 1000, 3),
      el("td", { class: "num", "data-field": "cost", "data-value": String(s.cost) },
        `${s.cost.toPrecision(4)} ${currency}`));
  }));
}

function renderDrift(reports, threshold) {
  document.getElementById("threshold").textContent = String(threshold);
  const scale = Math.max(threshold * 2, ...reports.flatMap((r) => r.features.map((f) => f.psi)));
  document.getElementById("drift").replaceChildren(...reports.map((r) => {
    const bars = r.features.map((f) => el("div", { class: f.psi > threshold ? "bar flagged" : "bar" },
      el("span", {}, f.name),
      el("span", { class: "track" },
        el("span", { class: "fill", style: `display:block;width:${(100 * f.psi) / scale}%` }),
        el("span", { class: "limit", style: `left:${(100 * threshold) / scale}%` })),
      el("span", { class: "num" }, f.psi.toFixed(3))));
    const verdict = r.drifted
      ? el("span", { class: "flag" }, "drifted")
      : el("span", { class: "ok" }, "no drift");
    return el("div", { class: "drift", "data-drift": `${r.model}/${r.version}`, "data-drifted": String(r.drifted) },
      el("h3", {}, `${r.model}/${r.version} · ${r.window} decisions · `, verdict), ...bars);
  }));
}

// Live quality per model version, the open alerts and each model's latest rollout.
function renderOutcomes(outcomes) {
  const pct = (x) => el("td", { class: "num" }, x == null ? "—" : `${(100 * x).toFixed(2)}%`);
  const dec = (x) => el("td", { class: "num" }, x == null ? "—" : x.toFixed(4));
  fill("quality", (outcomes?.quality ?? []).map((v) => {
    const q = v.window;
    const ci = q.accuracy_ci95 ? `${(100 * q.accuracy_ci95[0]).toFixed(1)}–${(100 * q.accuracy_ci95[1]).toFixed(1)}%` : "—";
    return el("tr", { "data-quality": `${v.model}/${v.version}` },
      el("td", {}, `${v.model}/${v.version}`), el("td", { class: "num" }, String(q.labelled)),
      pct(q.accuracy), el("td", { class: "num" }, ci), pct(v.held_out.accuracy),
      dec(q.auc), dec(v.held_out.roc_auc), dec(q.brier), dec(q.macro_f1));
  }));
  const alerts = outcomes?.alerts ?? [];
  document.getElementById("alerts").replaceChildren(...(alerts.length ? alerts.map((a) =>
    el("li", { class: "flag", "data-alert": `${a.model}/${a.version}/${a.rule}` },
      `${a.model}/${a.version}: ${a.rule} since ${new Date(a.raised_at_us / 1000).toLocaleTimeString()} — ${JSON.stringify(a.evidence)}`))
    : [el("li", { class: "ok" }, "none")]));
  const rollouts = outcomes?.rollouts ?? [];
  document.getElementById("rollouts").replaceChildren(...(rollouts.length ? rollouts.map((r) =>
    el("li", { "data-rollout": r.model },
      `${r.model}: ${r.candidate} over ${r.baseline}, ${r.state} at ${r.percent}% (steps ${r.steps.join(", ")}; guards ${r.guards})`))
    : [el("li", {}, "none")]));
}

function renderDecisions(decisions) {
  fill("decisions", decisions.map((d) => el("tr", {},
    el("td", {}, new Date(d.started_at_us / 1000).toISOString().slice(11, 23)),
    el("td", {}, `${d.model}/${d.version}`),
    el("td", {}, String(d.prediction ?? "—")),
    el("td", {}, d.shadow_version ? `${d.shadow_version} (${d.shadow_agrees ? "agrees" : "differs"})` : "—"),
    el("td", {}, String(d.status)),
    num(d.wall_us / 1000, 2),
    el("td", {}, auditLink(d.id)))));
}

function auditLink(id) {
  const link = el("a", { href: `/-/audit/${id}` }, id);
  link.addEventListener("click", openAudit);
  return link;
}

// The host's data needs the admin token when the host requires API keys (`ember up --auth keys
// --admin-token`): the page asks for it once per tab and sends it as a bearer token.
const TOKEN_KEY = "ember-admin-token";

function withToken() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { headers: { authorization: `Bearer ${token}` } } : {};
}

async function getJson(url) {
  const response = await fetch(url, withToken());
  const body = await response.json();
  if (response.status === 401) document.getElementById("login").hidden = false;
  if (!response.ok) throw new Error(body.error?.message ?? response.statusText);
  return body;
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
  event.target.hidden = true;
  refresh();
});

// With a token, an audit link is fetched with it and shown here (a plain link could not send it).
async function openAudit(event) {
  if (!sessionStorage.getItem(TOKEN_KEY)) return;
  event.preventDefault();
  const record = await getJson(event.currentTarget.getAttribute("href"));
  document.getElementById("audit-record").textContent = JSON.stringify(record, null, 2);
  document.getElementById("audit").hidden = false;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const overview = await getJson("/-/api/overview");
    renderModels(overview.models);
    renderTraffic(overview.traffic, overview.currency);
    renderDrift(overview.drift, overview.psi_threshold);
    renderOutcomes(overview.outcomes);
    renderDecisions(overview.decisions);
    status.textContent = `ledger ${overview.ledger ?? "off (--no-metering)"} · updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.ready = "true";
  } catch (error) {
    status.textContent = `could not load the overview: ${error.message}`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
