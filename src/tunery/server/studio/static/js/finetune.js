// The fine-tune wizard: base model, training and validation files (uploaded over /v1/files and
// checked by the validator before anything is submitted), suffix and advanced options, submit.
// A file the wizard uploads is removed again when that attempt fails (the file is refused, or
// the job is not created), so failed tries leave no files behind; files picked from the list of
// uploaded files are never removed.

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

/** A hyperparameter's own error, under its field: the server's error names it in `param`. */
const FIELDS = ["n_epochs", "batch_size", "learning_rate_multiplier", "seed", "beta", "suffix"];
function fieldOf(err) {
  if (err && FIELDS.includes(err.param)) return err.param;
  const m = /'(\w+)'/.exec(err?.message || "");
  return m && FIELDS.includes(m[1]) ? m[1] : null;
}

function setFieldError(id, err) {
  const input = $(`#${id}`);
  const label = input.closest(".field");
  let note = label.querySelector(".field-error");
  if (!err) {
    if (note) note.remove();
    input.removeAttribute("aria-invalid");
    update();
    return;
  }
  if (!note) note = label.appendChild(el("span", { class: "field-error", role: "alert" }));
  note.textContent = err.message || String(err);
  input.setAttribute("aria-invalid", "true");
  update();
}

/** Check a file. `quiet` is for a re-check after a hyperparameter changed: the file's verdict
 * stays and Start stays enabled meanwhile, so a click right after typing is not swallowed. */
async function check(kind, { quiet = false } = {}) {
  const s = state[kind];
  if (!s.id) return;
  if (!quiet) {
    s.checking = true;
    s.ok = null;
    update();
    setStatus(kind, `Checking ${s.name}…`);
  }
  const box = $(`#${kind}-report`);
  const model = baseSelect.value || undefined;
  let nEpochs = numberOrNull("n_epochs") ?? undefined;
  try {
    let report;
    try {
      report = await fetchReport(s.id, { purpose: kind, model, nEpochs });
      setFieldError("n_epochs", null);
    } catch (e) {
      const field = fieldOf(e);
      if (!field) throw e;
      // the epochs are wrong, not the file: say so under the field and report the file anyway
      setFieldError(field, e);
      nEpochs = undefined;
      report = await fetchReport(s.id, { purpose: kind, model });
    }
    if (state[kind] !== s) { // another file was chosen meanwhile: keep the verdict, show nothing
      s.ok = report.validation.ok;
      return;
    }
    s.ok = renderReport(box, report);
    s.kind = report.kind || "chat";
    setStatus(kind, s.ok ? `${s.name} (${s.id}) is valid${s.kind === "preference" ? " (preference pairs)" : ""}.` : `${s.name} (${s.id}) has errors: fix them and choose the file again.`);
    if (kind === "training" && s.ok) matchMethod(s.kind);
  } catch (e) {
    if (state[kind] !== s) return;
    s.ok = false;
    s.unchecked = true;
    clear(box);
    showError(box, e, { title: "Could not check the file" });
    setStatus(kind, "");
  } finally {
    s.checking = false;
    update();
  }
}

/** A file of preference pairs trains with DPO, a chat file with supervised fine-tuning: switch
 * the method to fit the training file, and say so beside it. */
function matchMethod(fileKind) {
  const method = $("#method");
  const dpo = method.value === "dpo";
  let note = "";
  if (fileKind === "preference" && !dpo) {
    method.value = "dpo";
    note = "Switched to DPO: the training file holds preference pairs.";
  } else if (fileKind === "chat" && dpo) {
    method.value = "lora";
    note = "Switched to supervised (LoRA): the training file holds chats, not preference pairs.";
  }
  $("#method-note").textContent = note;
  if (note) $("#advanced").open = true;
}

/** Why the method does not fit the files, or "" when it does. */
function methodMismatch() {
  const dpo = $("#method").value === "dpo";
  for (const kind of KINDS) {
    const s = state[kind];
    if (!s.id || !s.kind || s.checking) continue;
    if (dpo && s.kind !== "preference") return `DPO needs preference pairs, but the ${kind} file holds chats.`;
    if (!dpo && s.kind === "preference") return `The ${kind} file holds preference pairs: choose the DPO method.`;
  }
  return "";
}

async function upload(kind, file) {
  if (!file) return;
  const box = $(`#${kind}-report`);
  clear(box);
  // the list must not go on naming the file this one replaces, also when this upload fails
  $(`#${kind}-existing`).value = "";
  setStatus(kind, `Uploading ${file.name} (${fmtBytes(file.size)})…`);
  state[kind] = { id: null, name: file.name, ok: null, checking: true, kind: null };
  update();
  const form = new FormData();
  form.append("purpose", "fine-tune");
  form.append("file", file, file.name);
  try {
    const rec = await api("/v1/files", { method: "POST", form });
    const s = state[kind] = { id: rec.id, name: rec.filename, ok: null, checking: false, uploaded: true };
    await loadExisting();
    $(`#${kind}-existing`).value = rec.id;
    await check(kind);
    // a file the check refused is taken back, also when another file was chosen meanwhile; one
    // that could not be checked (the server was busy, the base model's tokenizer failed) may be
    // fine: it stays, to be checked again
    if (s.ok === false && !s.unchecked) {
      const current = state[kind] === s;
      const removed = await discard(kind, s);
      if (current) {
        setStatus(kind, `${s.name} has errors: fix them and choose the file again. `
          + (removed ? "The upload was removed from the server." : "The upload is still on the server: delete it on the Data page."));
      }
    }
  } catch (e) {
    state[kind] = { id: null, name: null, ok: null, checking: false };
    showError(box, e, { title: "Upload failed" });
    setStatus(kind, "");
    update();
  }
}

/** Delete the file the wizard uploaded for `s` (never one picked from the list); true when it is gone. */
async function discard(kind, s) {
  if (!s.uploaded || !s.id) return false;
  const id = s.id;
  const current = state[kind] === s;
  s.id = null; // it names no file now: nothing re-checks or submits it
  s.uploaded = false;
  if (current) $(`#${kind}-existing`).value = "";
  let removed = true;
  try {
    await api(`/v1/files/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (e) {
    removed = false;
    pageError(e);
  }
  try { await loadExisting(); } catch (e) { pageError(e); }
  update();
  return removed;
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
    if (remove) remove.hidden = !s.id && s.ok !== false;
  }
  $("#step-model").classList.toggle("done", !!baseSelect.value);
  const b = body();
  const settings = b.method[b.method.type];
  const hp = settings.hyperparameters;
  const mismatch = methodMismatch();
  const fieldError = $("#wizard .field-error");
  const fileRow = (kind) => {
    const s = state[kind];
    if (!s.id && !s.checking && s.ok !== false) return kind === "validation" ? "none" : "–";
    const verdict = s.checking ? "checking…" : s.ok ? "valid" : s.ok === false ? "invalid" : "";
    return el("span", {}, s.name || s.id, " ", el("span", { class: `badge status-${s.ok ? "ok" : s.ok === false ? "invalid" : "queued"}` }, verdict));
  };
  clear($("#summary"),
    el("dt", {}, "Base model"), el("dd", {}, b.model || "–"),
    el("dt", {}, "Training"), el("dd", {}, fileRow("training")),
    el("dt", {}, "Validation"), el("dd", {}, fileRow("validation")),
    el("dt", {}, "Suffix"), el("dd", {}, b.suffix || "–"),
    el("dt", {}, "Method"), el("dd", {}, `${b.method.type === "dpo" ? `DPO, beta ${hp.beta ?? "auto"}` : "supervised"}, ${settings.training_method === "full" ? "full weights" : "LoRA"}`,
      mismatch ? el("span", { class: "badge status-invalid", id: "method-mismatch" }, "does not fit the file") : null),
    el("dt", {}, "Epochs"), el("dd", {}, String(hp.n_epochs ?? "auto")),
    el("dt", {}, "Batch size"), el("dd", {}, String(hp.batch_size ?? "auto")),
    el("dt", {}, "LR multiplier"), el("dd", {}, String(hp.learning_rate_multiplier ?? "auto")),
    el("dt", {}, "Seed"), el("dd", {}, String(b.seed ?? "random")));
  // a refused validation file blocks the job until it is replaced or removed, also once deleted
  const validationOk = state.validation.ok !== false && (!state.validation.id || state.validation.ok === true);
  const ready = !!b.model && state.training.ok === true && validationOk && !state.training.checking
    && !state.validation.checking && !mismatch && !fieldError;
  $("#submit").disabled = !ready;
  $("#submit-hint").textContent = ready ? "The job is queued at once; its page shows live progress."
    : !b.model ? "Choose a base model."
      : state.training.ok === false ? "The training file has errors: fix them first."
        : state.validation.ok === false ? "The validation file has errors: fix or remove it."
          : mismatch ? mismatch
            : fieldError ? `${fieldError.closest(".field").querySelector("span").textContent}: ${fieldError.textContent}`
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
    const field = fieldOf(err);
    if (field) setFieldError(field, err);
    showError(box, err, { title: "The job was not created" });
    // a field to fix keeps the files for the next try; any other failure takes back this attempt's uploads
    for (const kind of field ? [] : KINDS) {
      const s = state[kind];
      if (!s.uploaded || !s.id) continue;
      const name = s.name;
      state[kind] = { id: null, name: null, ok: null, checking: false };
      clear($(`#${kind}-report`));
      const removed = await discard(kind, s);
      setStatus(kind, removed ? `${name} was removed from the server, as the job was not created: choose it again.`
        : `${name} is still on the server: pick it from the uploaded files to try again.`);
    }
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
  $(`#${kind}-file`).addEventListener("change", (e) => {
    upload(kind, e.target.files[0]);
    e.target.value = ""; // choosing the same file again, once fixed, is a change too
  });
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
// billed tokens depend on the epochs: re-count them as the user types, a moment after the last key
let epochsTimer = null;
$("#n_epochs").addEventListener("input", () => {
  clearTimeout(epochsTimer);
  if (!state.training.id) { setFieldError("n_epochs", null); return; }
  epochsTimer = setTimeout(() => check("training", { quiet: true }), 400);
});
$("#method").addEventListener("change", () => { $("#method-note").textContent = ""; update(); });
$$("#wizard input, #wizard select").forEach((i) => i.addEventListener("input", update));
$("#wizard").addEventListener("submit", submit);
init();
