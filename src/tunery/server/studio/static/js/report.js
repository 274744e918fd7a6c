// A data file's report from GET /v1/tunery/files/{id}/report: the validator's verdict with every
// problem by line and field, token statistics, and the personal-data scan. Used by the
// fine-tune wizard and the data page.

import { api } from "./api.js";
import { el, fmtNumber, table } from "./ui.js";

export function fetchReport(fileId, { purpose = "training", model, nEpochs } = {}) {
  return api(`/v1/tunery/files/${encodeURIComponent(fileId)}/report`, { query: { purpose, model, n_epochs: nEpochs } });
}

function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

function issuesTable(issues) {
  return el("div", { class: "table-wrap issues", style: "max-height:320px" }, table([
    { label: "Line", class: "where", render: (i) => (i.line === null ? "file" : `line ${i.line}`) },
    { label: "Field", class: "where", render: (i) => i.field || "–" },
    { label: "Problem", render: (i) => el("span", {}, el("span", { class: `sev-${i.severity}` }, i.severity === "error" ? "error: " : "warning: "), i.message) },
  ], issues, { rowAttrs: (i) => ({ class: `issue sev-row-${i.severity}`, dataset: { line: i.line ?? "", severity: i.severity } }) }));
}

function statsBlock(s, purpose) {
  const tok = s.tokens;
  const stat = (v, k, title) => el("div", { class: "stat", title }, el("div", { class: "v" }, fmtNumber(v, 1)), el("div", { class: "k" }, k));
  return el("div", { class: "stack token-stats" },
    el("h3", {}, `Tokens (${s.model} tokenizer)`),
    el("div", { class: "stat-grid" },
      stat(s.n_examples, "examples"),
      stat(tok.median, "median tokens / example", `min ${tok.min}, p95 ${tok.p95}, max ${tok.max}, mean ${tok.mean.toFixed(1)}`),
      stat(tok.max, "longest example"),
      stat(s.total_tokens, "tokens in the file"),
      stat(s.trained_tokens, "trained tokens", "tokens of assistant messages the model learns from"),
      purpose === "validation" ? null : stat(s.billed_tokens, `billed tokens (${s.n_epochs} epoch${s.n_epochs === 1 ? "" : "s"}${s.n_epochs_auto ? ", auto" : ""})`,
        "what a hosted service would bill: every token, once per epoch")),
    s.n_over_context ? el("div", { class: "alert warn" }, `${plural(s.n_over_context, "example")} longer than the model's ${s.context_length}-token context`) : null);
}

function piiBlock(p) {
  const kinds = Object.entries(p.counts);
  if (p.not_scanned) return el("div", { class: "pii alert warn", dataset: { found: "unscanned" } }, `Personal-data scan: not done: ${p.not_scanned}.`);
  if (!kinds.length) return el("div", { class: "pii alert ok", dataset: { found: "0" } }, "Personal-data scan: nothing found (emails, phone numbers, cards, IBANs, IP addresses…).");
  return el("div", { class: "stack pii", dataset: { found: String(p.n_findings) } },
    el("div", { class: "alert warn" }, `Personal-data scan: ${kinds.map(([k, n]) => `${n} ${k}`).join(", ")} on ${plural(p.lines_with_pii.length, "line")}. `,
      "Scrub it with ", el("code", {}, "tunery data scrub FILE"), " before training."),
    el("div", { class: "table-wrap", style: "max-height:220px" }, table([
      { label: "Line", class: "where", render: (f) => `line ${f.line}` },
      { label: "Field", class: "where", render: (f) => f.field },
      { label: "Kind", render: (f) => f.kind },
      { label: "Text", render: (f) => el("code", {}, f.text) },
    ], p.findings)),
    p.n_findings > p.findings.length ? el("p", { class: "muted small" }, `…and ${p.n_findings - p.findings.length} more`) : null);
}

/** Render a report into `container`; returns true when the file is valid. */
export function renderReport(container, report) {
  const v = report.validation;
  const errors = v.issues.filter((i) => i.severity === "error");
  const warnings = v.issues.filter((i) => i.severity === "warning");
  const head = el("div", { class: "row" },
    el("span", { class: `badge verdict status-${v.ok ? "ok" : "invalid"}`, dataset: { ok: String(v.ok) } }, v.ok ? "valid" : "invalid"),
    el("span", { class: "muted" }, `${report.file.filename} · ${plural(v.n_examples, "valid example")} in ${plural(v.n_lines, "line")} · ${plural(v.n_errors, "error")} · ${plural(v.n_warnings, "warning")}`));
  container.replaceChildren(el("div", { class: "report", dataset: { ok: String(v.ok), errors: String(v.n_errors) } },
    head,
    errors.length ? el("div", { class: "stack" }, el("h3", {}, "Errors"), issuesTable(errors)) : null,
    warnings.length ? el("details", { class: "warnings", open: !errors.length }, el("summary", {}, plural(warnings.length, "warning")), issuesTable(warnings)) : null,
    v.n_issues > v.issues.length ? el("p", { class: "muted small" }, `Showing the first ${v.issues.length} of ${v.n_issues} problems.`) : null,
    report.token_stats ? statsBlock(report.token_stats, v.purpose)
      : el("p", { class: "muted small" }, v.n_examples ? "Pick a model to see token statistics." : "No valid example to measure in tokens."),
    piiBlock(report.pii)));
  return v.ok;
}
