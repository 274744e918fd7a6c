// The data page: uploaded files (GET/POST/DELETE /v1/files), each with its report: the
// validator's problems by line and field, token statistics for a chosen model, and the PII scan.

import { api, listAll } from "./api.js";
import { fetchReport, renderReport } from "./report.js";
import { $, clear, el, fillModelSelect, fmtBytes, fmtTime, pageError, showError, table, toast } from "./ui.js";

let files = [];
let current = null;
const modelSelect = $("#report-model");
const purposeSelect = $("#report-purpose");

async function loadFiles() {
  files = await listAll("/v1/files", { limit: 10000 });
  $("#file-count").textContent = `${files.length} file${files.length === 1 ? "" : "s"}`;
  const host = $("#files");
  host.dataset.state = "ready";
  clear(host, table([
    { label: "File", render: (f) => el("div", {}, el("button", { type: "button", class: "btn link filename", title: f.filename, onclick: () => show(f.id), dataset: { open: f.id } }, f.filename),
      el("div", { class: "muted small mono" }, f.id)) },
    { label: "Details", render: (f) => el("div", {}, `${f.purpose} · ${fmtBytes(f.bytes)}`, el("div", { class: "muted small" }, fmtTime(f.created_at, { seconds: false }))) },
    { label: "", class: "actions", render: (f) => el("div", { class: "row end nowrap" },
      el("button", { type: "button", class: "btn small", onclick: () => download(f) }, "Download"),
      el("button", { type: "button", class: "btn small danger", onclick: () => remove(f), "aria-label": `Delete ${f.filename}` }, "Delete")) },
  ], files, {
    empty: "No files yet. Upload a chat JSONL file, or use the fine-tune wizard.",
    rowAttrs: (f) => ({ class: f.id === current ? "selected" : "", dataset: { file: f.id } }),
  }));
}

async function show(id) {
  current = id;
  const f = files.find((x) => x.id === id);
  $("#report-title").textContent = f ? `Report: ${f.filename}` : `Report: ${id}`;
  $("#report-controls").hidden = false;
  document.querySelectorAll("#files tr[data-file]").forEach((tr) => tr.classList.toggle("selected", tr.dataset.file === id));
  history.replaceState(null, "", `/data?file=${encodeURIComponent(id)}`);
  const box = $("#report");
  clear(box, el("p", { class: "muted" }, "Checking…"));
  if (f && f.purpose === "fine-tune-results") {
    // a job's step-metrics CSV is no chat data: show its first lines rather than a validation
    $("#report-controls").hidden = true;
    try {
      const text = await api(`/v1/files/${encodeURIComponent(id)}/content`, { as: "text" });
      const lines = text.split("\n");
      clear(box, el("p", { class: "muted small" }, "A fine-tuning job's results: one row of metrics per step."),
        el("pre", { class: "code results" }, el("code", {}, lines.slice(0, 40).join("\n") + (lines.length > 41 ? "\n…" : ""))));
    } catch (err) {
      clear(box);
      showError(box, err, { title: "Could not read the file" });
    }
    return;
  }
  try {
    const report = await fetchReport(id, { purpose: purposeSelect.value, model: modelSelect.value || undefined });
    if (current !== id) return;
    renderReport(box, report);
  } catch (err) {
    clear(box);
    showError(box, err, { title: "No report" });
  }
}

async function download(f) {
  try {
    const blob = await api(`/v1/files/${encodeURIComponent(f.id)}/content`, { as: "blob" });
    const a = el("a", { href: URL.createObjectURL(blob), download: f.filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 5000);
  } catch (err) {
    pageError(err);
  }
}

async function remove(f) {
  if (!window.confirm(`Delete ${f.filename} (${f.id})? Jobs that used it keep their results.`)) return;
  try {
    await api(`/v1/files/${encodeURIComponent(f.id)}`, { method: "DELETE" });
    toast(`Deleted ${f.filename}`);
    if (current === f.id) {
      current = null;
      clear($("#report"), el("p", { class: "muted" }, "Pick a file to see its report."));
      $("#report-controls").hidden = true;
    }
    await loadFiles();
  } catch (err) {
    pageError(err);
  }
}

async function upload(file) {
  if (!file) return;
  const form = new FormData();
  form.append("purpose", "fine-tune");
  form.append("file", file, file.name);
  try {
    const rec = await api("/v1/files", { method: "POST", form });
    toast(`Uploaded ${rec.filename}`, "ok");
    await loadFiles();
    show(rec.id);
  } catch (err) {
    pageError(err);
  } finally {
    $("#upload-file").value = "";
  }
}

async function init() {
  try {
    const models = (await api("/v1/models")).data.filter((m) => m.kind !== "deployment");
    fillModelSelect(modelSelect, models, { kinds: ["base", "fine-tuned"], placeholder: "No model (skip token statistics)" });
    const base = models.find((m) => m.kind === "base");
    if (base) modelSelect.value = base.id;
  } catch (err) {
    pageError(err);
  }
  try { await loadFiles(); } catch (err) { pageError(err); }
  const wanted = new URLSearchParams(location.search).get("file");
  if (wanted) show(wanted);
}

modelSelect.addEventListener("change", () => current && show(current));
purposeSelect.addEventListener("change", () => current && show(current));
$("#upload-file").addEventListener("change", (e) => upload(e.target.files[0]));
init();
