// One prompt-flow run: its properties, metrics and evaluations, every line's inputs, outputs and
// error (GET /v1/tunery/runs/{name}, polled while it runs, through passing failures), cancel, and
// export as JSONL or CSV.

import { api } from "./api.js";
import { $, badge, clear, el, fmtDuration, fmtNumber, fmtTime, pageError, poll, showError, table, toast } from "./ui.js";

const NAME = $("#run-title").dataset.run;
const RUN_URL = `/v1/tunery/runs/${encodeURIComponent(NAME)}`;

function pretty(value) {
  if (value === null || value === undefined) return el("span", { class: "muted" }, "–");
  return el("pre", { class: "out" }, typeof value === "string" ? value : JSON.stringify(value, null, 1));
}

function kv(obj) {
  const entries = Object.entries(obj || {});
  return entries.length ? el("dl", { class: "kv small" }, entries.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, pretty(v))])) : el("span", { class: "muted" }, "–");
}

function render(run) {
  const active = ["Starting", "Running"].includes(run.status) || (run.submission && ["Starting", "Running"].includes(run.submission.status));
  $("#cancel-run").hidden = !active;
  $("#run-sub").textContent = `${run.flow_name || "flow"}${run.variant ? ` · variant ${run.variant}` : ""}${run.run ? ` · evaluates ${run.run}` : ""}`;
  const metrics = Object.entries(run.metrics || {});
  clear($("#run-summary"), el("div", { class: "stat-grid" },
    el("div", { class: "stat" }, el("div", { class: "k" }, "status"), el("div", { class: "v", id: "run-status", dataset: { status: run.status } }, badge(run.status))),
    el("div", { class: "stat" }, el("div", { class: "k" }, "lines"), el("div", { class: "v" }, `${run.lines.length}${run.total_lines ? `/${run.total_lines}` : ""}`)),
    el("div", { class: "stat" }, el("div", { class: "k" }, "failed"), el("div", { class: "v" }, String(run.failed_lines ?? run.lines.filter((l) => l.status !== "Completed").length))),
    el("div", { class: "stat" }, el("div", { class: "k" }, "duration"), el("div", { class: "v" }, fmtDuration(run.duration))),
    el("div", { class: "stat" }, el("div", { class: "k" }, "created"), el("div", { class: "v small" }, fmtTime(run.created_at)))),
    metrics.length ? el("p", { id: "run-metrics" }, el("strong", {}, "Metrics: "), metrics.map(([k, v]) => `${k} ${fmtNumber(v, 4)}`).join(" · ")) : null,
    (run.evaluations || []).length ? el("div", { class: "stack" }, el("strong", {}, "Evaluated by"), run.evaluations.map((e) => el("div", {},
      el("a", { href: `/runs/${encodeURIComponent(e.name)}` }, e.name), " ", badge(e.status), " ",
      Object.entries(e.metrics || {}).map(([k, v]) => `${k} ${fmtNumber(v, 4)}`).join(" · ")))) : null,
    run.error ? el("div", { class: "alert error" }, run.error) : null);
  $("#line-count").textContent = `${run.lines.length} line${run.lines.length === 1 ? "" : "s"}`;
  const host = $("#run-lines");
  host.dataset.state = active ? "running" : "ready";
  clear(host, table([
    { label: "#", class: "num", render: (l) => String(l.line_number) },
    { label: "Status", render: (l) => badge(l.status) },
    { label: "Inputs", render: (l) => kv(l.inputs) },
    { label: "Outputs", render: (l) => (l.error ? el("div", { class: "alert error" }, `${l.error.node ? `node ${l.error.node}: ` : ""}${l.error.message}`) : kv(l.outputs)) },
    { label: "Time", class: "num", render: (l) => `${fmtNumber(l.duration, 2)}s` },
  ], run.lines, { empty: active ? "No line has finished yet." : "This run has no lines.", rowAttrs: (l) => ({ dataset: { line: l.line_number } }) }));
  return active;
}

async function download(format) {
  try {
    const blob = await api(`${RUN_URL}/export`, { query: { format }, as: "blob" });
    const a = el("a", { href: URL.createObjectURL(blob), download: `${NAME}.${format}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  } catch (err) { showError($("#run-summary").parentElement, err, { title: "Export failed" }); }
}

$("#export-jsonl").addEventListener("click", () => download("jsonl"));
$("#export-csv").addEventListener("click", () => download("csv"));
$("#cancel-run").addEventListener("click", async () => {
  try { await api(`${RUN_URL}/cancel`, { method: "POST" }); toast("Canceling…"); } catch (err) { pageError(err); }
});
// every second until the run ends; a passing failure (the server out of reach) is retried under a note
poll(async () => {
  const active = render(await api(RUN_URL));
  pageError(null);
  return active ? 1000 : null;
});
