// Prompt-flow runs: GET /v1/tunery/runs, multi-select, and the flows library's side-by-side
// comparison page (GET /v1/tunery/runs/compare.html) shown in a sandboxed frame.

import { api } from "./api.js";
import { $, badge, clear, el, fmtNumber, fmtTime, pageError, showError, table } from "./ui.js";

const selected = new Set();

function metricsText(r) {
  const m = Object.entries(r.metrics || {});
  if (!m.length) return el("span", { class: "muted" }, "–");
  return el("span", { class: "small" }, m.slice(0, 4).map(([k, v]) => `${k} ${fmtNumber(v, 3)}`).join(" · ") + (m.length > 4 ? " …" : ""));
}

function syncButton() {
  const button = $("#compare-runs");
  button.disabled = selected.size === 0;
  button.textContent = selected.size > 1 ? `Compare ${selected.size} runs` : selected.size === 1 ? "Show run" : "Compare selected";
}

async function load() {
  const { data } = await api("/v1/tunery/runs");
  const host = $("#runs");
  host.dataset.state = "ready";
  clear(host, table([
    { label: "", render: (r) => el("input", { type: "checkbox", "aria-label": `Select ${r.name}`, dataset: { run: r.name }, checked: selected.has(r.name),
      onchange: (e) => { if (e.target.checked) selected.add(r.name); else selected.delete(r.name); syncButton(); } }) },
    { label: "Run", class: "id", render: (r) => el("div", {}, el("a", { href: `/runs/${encodeURIComponent(r.name)}`, dataset: { runLink: r.name } }, el("strong", {}, r.display_name || r.name)), r.display_name && r.display_name !== r.name ? el("div", { class: "muted small" }, r.name) : null) },
    { label: "Flow", render: (r) => el("div", {}, r.flow_name || "–", r.variant ? el("div", { class: "muted small" }, `variant ${r.variant}`) : null) },
    { label: "Evaluates", class: "id", render: (r) => r.run || "–" },
    { label: "Status", render: (r) => badge(r.status) },
    { label: "Lines", class: "num", render: (r) => (r.total_lines === undefined ? "–" : `${r.total_lines}${r.failed_lines ? ` (${r.failed_lines} failed)` : ""}`) },
    { label: "Metrics", render: metricsText },
    { label: "Created", class: "created", render: (r) => fmtTime(r.created_at) },
  ], data, {
    empty: el("span", {}, "No runs yet. Run a flow over a data file with ", el("code", {}, "tunery run create --flow FLOW --data DATA.jsonl"), "."),
    rowAttrs: (r) => ({ dataset: { runRow: r.name } }),
  }));
  syncButton();
}

async function compare() {
  const names = [...selected];
  const card = $("#comparison-card");
  card.hidden = false;
  $("#comparison-names").textContent = names.join(" · ");
  const frame = $("#comparison");
  try {
    frame.srcdoc = await api("/v1/tunery/runs/compare.html", { query: { names: names.join(",") }, as: "text" });
    frame.dataset.runs = names.join(",");
    card.querySelectorAll(":scope > .alert.error").forEach((x) => x.remove());
    card.scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (err) {
    frame.srcdoc = "";
    showError(card, err, { title: "No comparison" });
  }
}

$("#compare-runs").addEventListener("click", compare);
load().catch(pageError);
