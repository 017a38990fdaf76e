// Ember's browser demo: loads each bundled model's routed stable version into the page (the
// ember-browser package) and predicts locally. `window.ember` is the page's API for scripts
// and tests: `await ember.ready`, `await ember.predict(model, backend, input)`.
import init, { Model } from "./pkg/ember_browser.js";

const status = document.getElementById("status");
const loaded = new Map(); // "<model>/<backend>" → Promise<Model>
let listing;

/** The version a model's `stable` alias names (else its newest), from the function's `/models`. */
function stableVersion(name) {
  const model = listing.models.find((m) => m.name === name);
  if (!model) throw new Error(`the function serves no model '${name}'`);
  return model.aliases?.stable ?? model.versions[model.versions.length - 1];
}

/** The model loaded on a backend ("auto" | "webgpu" | "cpu"), loading it once. */
function model(name, backend) {
  const key = `${name}/${backend}`;
  if (!loaded.has(key)) {
    const base = `models/${name}/${stableVersion(name)}/`;
    loaded.set(key, Model.load(base + "model.json", base + "model.onnx", { backend }));
  }
  return loaded.get(key);
}

/** Predicts with the model on a backend: `{ok: true, reply}` or `{ok: false, error}`. */
async function predict(name, backend, input) {
  try {
    const m = await model(name, backend);
    return { ok: true, reply: await m.predict(input) };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? { message: String(error) } : error };
  }
}

const backend = () => document.querySelector('input[name="backend"]:checked').value;

function describe(error) {
  const e = error.error ?? error;
  return `${e.message ?? JSON.stringify(e)}${e.field ? ` (field: ${e.field})` : ""}`;
}

function show(panel, result) {
  const box = document.getElementById(panel);
  box.classList.toggle("error", !result.ok);
  if (!result.ok) {
    box.querySelector(".label").textContent = "Rejected";
    box.querySelector(".confidence").textContent = describe(result.error);
    box.querySelector(".meta").textContent = "";
    return null;
  }
  const r = result.reply;
  box.querySelector(".label").textContent = r.label;
  box.querySelector(".confidence").textContent = `${(r.confidence * 100).toFixed(1)}% confident`;
  box.querySelector(".meta").textContent =
    `${r.model} v${r.model_version} · ${r.backend.name} · ${r.latency_ms.toFixed(2)} ms`;
  return r;
}

// ---- digits: a drawing pad -------------------------------------------------------------------
const pad = document.getElementById("pad");
const ink = pad.getContext("2d");

function clearPad() {
  ink.fillStyle = "#000";
  ink.fillRect(0, 0, pad.width, pad.height);
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
}

let drawing = false;
pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  ink.strokeStyle = "#fff";
  ink.lineWidth = 16;
  ink.lineCap = ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(...point(event));
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  ink.lineTo(...point(event));
  ink.stroke();
});
pad.addEventListener("pointerup", () => {
  drawing = false;
  classifyDrawing();
});
document.getElementById("clear").addEventListener("click", clearPad);

async function classifyDrawing() {
  const image = pad.toDataURL("image/png").split(",")[1];
  const reply = show("digit-result", await predict("digits", backend(), { image }));
  const bars = document.querySelector("#digit-result .bars");
  bars.replaceChildren(
    ...(reply?.probabilities ?? []).map((p, i) => {
      const row = document.createElement("li");
      row.classList.toggle("top", i === reply.prediction);
      row.innerHTML = `<span>${reply.labels[i]}</span><span class="bar" style="width:${(p * 100).toFixed(1)}%"></span><span>${(p * 100).toFixed(1)}%</span>`;
      return row;
    }),
  );
}

// ---- credit risk: a form built from the model's spec --------------------------------------------
const examples = { age: 35, income: 52000, credit_score: 690 };

async function buildCreditForm() {
  const form = document.getElementById("credit-form");
  const spec = (await model("credit-risk", backend())).spec;
  for (const f of spec.tabular.features) {
    const label = document.createElement("label");
    label.htmlFor = f.name;
    label.textContent = `${f.name.replaceAll("_", " ")}${f.unit ? ` (${f.unit})` : ""}`;
    label.title = f.description ?? "";
    const input = document.createElement("input");
    Object.assign(input, { id: f.name, name: f.name, type: "number", step: f.type === "integer" ? "1" : "any" });
    input.value = examples[f.name] ?? f.default ?? "";
    input.required = !!f.required;
    form.append(label, input);
  }
  const submit = document.createElement("button");
  submit.textContent = "Assess";
  form.append(submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    assessCredit();
  });
}

async function assessCredit() {
  const input = {};
  for (const field of document.querySelectorAll("#credit-form input")) {
    if (field.value !== "") input[field.name] = Number(field.value);
  }
  const reply = show("credit-result", await predict("credit-risk", backend(), input));
  if (reply) {
    document.querySelector("#credit-result .label").textContent =
      reply.label === "default" ? "Decline: likely to default" : "Approve: likely to repay";
  }
}

// ---- start ------------------------------------------------------------------------------------
async function loadModels() {
  const chosen = backend();
  status.classList.remove("error");
  status.textContent = `Loading models on ${chosen}…`;
  try {
    const models = await Promise.all(["digits", "credit-risk"].map((name) => model(name, chosen)));
    status.textContent = models
      .map((m) => `${m.spec.name} v${m.spec.version}: ${m.backend} in ${m.loadMs.toFixed(0)} ms (${m.backendReason})`)
      .join(" · ");
  } catch (error) {
    status.classList.add("error");
    status.textContent = `Could not load on ${chosen}: ${describe(error)}`;
    throw error;
  }
}

async function start() {
  await init();
  listing = await (await fetch("/models")).json();
  clearPad();
  await loadModels();
  await buildCreditForm();
  await assessCredit();
}

for (const radio of document.querySelectorAll('input[name="backend"]')) {
  radio.addEventListener("change", () => loadModels().then(assessCredit, () => {}));
}

window.ember = { ready: start(), predict, model };
