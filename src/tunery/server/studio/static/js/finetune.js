// The fine-tune wizard: base model, training and validation files (uploaded over /v1/files and
// checked by the validator before anything is submitted), suffix and advanced options, submit.

import { api, listAll } from "./api.js";
import { fetchReport, renderReport } from "./report.js";
import { $, $$, clear, el, fillModelSelect, fmtBytes, pageError, showError, clearError } from "./ui.js";

const KINDS = ["training", "validation"];
const baseSelect = $("#base-model");
const state = {
  training: { id: null, name: null, ok: null, checking: false },
  validation: { id: null, name: null, ok: null, checking: false },
};

function setStatus(kind, text) {
  $(`#${kind}-status`).textContent = text;
}

async function check(kind) {
  const s = state[kind];
  if (!s.id) return;
  s.checking = true;
  s.ok = null;
  update();
  setStatus(kind, `Checking ${s.name}…`);
  const box = $(`#${kind}-report`);
  try {
    const report = await fetchReport(s.id, { purpose: kind, model: baseSelect.value || undefined, nEpochs: numberOrNull("n_epochs") ?? undefined });
    if (state[kind] !== s) return; // another file was chosen meanwhile
    s.ok = renderReport(box, report);
    setStatus(kind, s.ok ? `${s.name} (${s.id}) is valid.` : `${s.name} (${s.id}) has errors: fix them and choose the file again.`);
  } catch (e) {
    s.ok = false;
    clear(box);
    showError(box, e, { title: "Could not check the file" });
    setStatus(kind, "");
  } finally {
    s.checking = false;
    update();
  }
}

async function upload(kind, file) {
  if (!file) return;
  const box = $(`#${kind}-report`);
  clear(box);
  setStatus(kind, `Uploading ${file.name} (${fmtBytes(file.size)})…`);
  state[kind] = { id: null, name: file.name, ok: null, checking: true };
  update();
  const form = new FormData();
  form.append("purpose", "fine-tune");
  form.append("file", file, file.name);
  try {
    const rec = await api("/v1/files", { method: "POST", form });
    state[kind] = { id: rec.id, name: rec.filename, ok: null, checking: false };
    await loadExisting();
    $(`#${kind}-existing`).value = rec.id;
    await check(kind);
  } catch (e) {
    state[kind] = { id: null, name: null, ok: null, checking: false };
    showError(box, e, { title: "Upload failed" });
    setStatus(kind, "");
    update();
  }
}

function forget(kind) {
  state[kind] = { id: null, name: null, ok: null, checking: false };
  clear($(`#${kind}-report`));
  $(`#${kind}-existing`).value = "";
  $(`#${kind}-file`).value = "";
  setStatus(kind, "No validation file: the job reports training metrics only.");
  update();
}

async function loadExisting() {
  const files = await listAll("/v1/files", { query: { purpose: "fine-tune" } });
  for (const kind of KINDS) {
    const sel = $(`#${kind}-existing`);
    const keep = sel.value;
    clear(sel, el("option", { value: "" }, files.length ? "Uploaded files…" : "No uploaded files yet"),
      files.map((f) => el("option", { value: f.id }, `${f.filename} · ${f.id}`)));
    sel.value = keep;
  }
  return files;
}

function numberOrNull(id) {
  const v = $(`#${id}`).value.trim();
  return v === "" ? null : Number(v);
}

function body() {
  const hp = {};
  for (const k of ["n_epochs", "batch_size", "learning_rate_multiplier"]) {
    const v = numberOrNull(k);
    if (v !== null) hp[k] = v;
  }
  const dpo = $("#method").value === "dpo";
  const beta = numberOrNull("beta");
  if (dpo && beta !== null) hp.beta = beta;
  const type = dpo ? "dpo" : "supervised";
  const out = {
    model: baseSelect.value,
    training_file: state.training.id,
    method: { type, [type]: { hyperparameters: hp, training_method: dpo ? "lora" : $("#method").value } },
  };
  if (state.validation.id) out.validation_file = state.validation.id;
  const suffix = $("#suffix").value.trim();
  if (suffix) out.suffix = suffix;
  const seed = numberOrNull("seed");
  if (seed !== null) out.seed = seed;
  return out;
}

function update() {
  for (const kind of KINDS) {
    const s = state[kind];
    const step = $(`#step-${kind}`);
    step.classList.toggle("done", s.ok === true);
    step.classList.toggle("bad", s.ok === false);
    const remove = $(`#${kind}-remove`);
    if (remove) remove.hidden = !s.id;
  }
  $("#step-model").classList.toggle("done", !!baseSelect.value);
  const b = body();
  const settings = b.method[b.method.type];
  const hp = settings.hyperparameters;
  const fileRow = (kind) => {
    const s = state[kind];
    if (!s.id && !s.checking) return kind === "validation" ? "none" : "–";
    const verdict = s.checking ? "checking…" : s.ok ? "valid" : s.ok === false ? "invalid" : "";
    return el("span", {}, s.name || s.id, " ", el("span", { class: `badge status-${s.ok ? "ok" : s.ok === false ? "invalid" : "queued"}` }, verdict));
  };
  clear($("#summary"),
    el("dt", {}, "Base model"), el("dd", {}, b.model || "–"),
    el("dt", {}, "Training"), el("dd", {}, fileRow("training")),
    el("dt", {}, "Validation"), el("dd", {}, fileRow("validation")),
    el("dt", {}, "Suffix"), el("dd", {}, b.suffix || "–"),
    el("dt", {}, "Method"), el("dd", {}, `${b.method.type === "dpo" ? `DPO, beta ${hp.beta ?? "auto"}` : "supervised"}, ${settings.training_method === "full" ? "full weights" : "LoRA"}`),
    el("dt", {}, "Epochs"), el("dd", {}, String(hp.n_epochs ?? "auto")),
    el("dt", {}, "Batch size"), el("dd", {}, String(hp.batch_size ?? "auto")),
    el("dt", {}, "LR multiplier"), el("dd", {}, String(hp.learning_rate_multiplier ?? "auto")),
    el("dt", {}, "Seed"), el("dd", {}, String(b.seed ?? "random")));
  const validationOk = !state.validation.id || state.validation.ok === true;
  const ready = !!b.model && state.training.ok === true && validationOk && !state.training.checking && !state.validation.checking;
  $("#submit").disabled = !ready;
  $("#submit-hint").textContent = ready ? "The job is queued at once; its page shows live progress."
    : !b.model ? "Choose a base model."
      : state.training.ok === false ? "The training file has errors: fix them first."
        : state.validation.ok === false ? "The validation file has errors: fix or remove it."
          : "Upload a valid training file.";
}

async function submit(e) {
  e.preventDefault();
  const box = $("#submit-error");
  clearError(box);
  $("#submit").disabled = true;
  try {
    const job = await api("/v1/fine_tuning/jobs", { method: "POST", json: body() });
    location.href = `/jobs/${encodeURIComponent(job.id)}`;
  } catch (err) {
    showError(box, err, { title: "The job was not created" });
    update();
  }
}

async function init() {
  try {
    const models = (await api("/v1/models")).data;
    const wanted = new URLSearchParams(location.search).get("model");
    fillModelSelect(baseSelect, models, { kinds: ["base", "fine-tuned"], selected: wanted, placeholder: "Choose a model" });
    const bases = models.filter((m) => m.kind === "base");
    if (!wanted && bases.length) baseSelect.value = bases[0].id;
    if (!bases.length) pageError(new Error("No base model is registered. Pull one with `tunery models pull smollm2-135m-instruct`."));
  } catch (err) {
    pageError(err);
  }
  try { await loadExisting(); } catch (err) { pageError(err); }
  baseSelect.dataset.ready = "true";
  update();
}

for (const kind of KINDS) {
  $(`#${kind}-file`).addEventListener("change", (e) => upload(kind, e.target.files[0]));
  $(`#${kind}-existing`).addEventListener("change", (e) => {
    const id = e.target.value;
    if (!id) { if (kind === "validation") forget(kind); return; }
    state[kind] = { id, name: e.target.selectedOptions[0].textContent.split(" · ")[0], ok: null, checking: false };
    check(kind);
  });
  const remove = $(`#${kind}-remove`);
  if (remove) remove.addEventListener("click", () => forget(kind));
  const zone = $(`[data-drop=${kind}]`);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) upload(kind, e.dataTransfer.files[0]);
  });
}
baseSelect.addEventListener("change", () => { update(); KINDS.forEach((k) => check(k)); });
$("#n_epochs").addEventListener("change", () => check("training"));
$$("#wizard input, #wizard select").forEach((i) => i.addEventListener("input", update));
$("#wizard").addEventListener("submit", submit);
init();
