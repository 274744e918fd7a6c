// The flow editor: the DAG drawn from the flow's yaml (nodes placed in rows by how deep their
// references go), a form per node (prompt or Python source, inputs, connection and LLM settings,
// variants), the flow's inputs and outputs; save through PUT /v1/tunery/flows/{name}, whose
// validation problems are shown on the node and field they name. Two more tabs: one input run
// against several variants side by side, and the batch run & evaluate wizard with live progress.

import { api } from "./api.js";
import { $, $$, badge, clear, el, errorMessage, fillModelSelect, fmtNumber, pageError, poll, showError, toast } from "./ui.js";

const NAME = $("#flow-title").dataset.flow;
const FLOW_URL = `/v1/tunery/flows/${encodeURIComponent(NAME)}`;
const REF = /^\s*\$\{([^}]*)\}\s*$/;
const ROLE = /^\s*#?\s*(system|user|assistant|function|tool)\s*:\s*$/i;

let flow = null;        // the last GET/PUT answer
let dag = null;         // the yaml being edited (a copy of flow.dag)
let files = {};         // path -> text being edited
let problems = [];
let selected = null;    // {node, variant} or {io: true}
let models = [];

// -- state ---------------------------------------------------------------------------------

function adopt(answer) {
  flow = answer;
  dag = structuredClone(answer.dag);
  files = { ...answer.files };
  problems = answer.problems || [];
  markDirty(false);
  $("#flow-sub").textContent = `${answer.description || "A prompt flow"} · ${answer.source === "link" ? `folder ${answer.origin}` : `from ${answer.origin || "your flows"}`}`;
}

function dirty() {
  return JSON.stringify(dag) !== JSON.stringify(flow.dag) || Object.keys(files).some((k) => files[k] !== flow.files[k]);
}

function markDirty(on = dirty()) {
  $("#save-flow").disabled = !on;
  $("#save-state").textContent = on ? "unsaved changes" : "saved";
  document.body.dataset.dirty = on ? "true" : "false";
  if (!on && flow && problems !== flow.problems) {  // edited back to the saved flow: its own problems again
    problems = flow.problems || [];
    showProblems();
    drawGraph();
  }
}

/** A node's definition as it runs: its own, or (with use_variants) the variant's. */
function definition(name, variant) {
  const item = (dag.nodes || []).find((n) => n.name === name);
  if (!item) return null;
  if (!item.use_variants) return item;
  const spec = (dag.node_variants || {})[name];
  if (!spec) return null;
  const vid = variant || spec.default_variant_id || Object.keys(spec.variants)[0];
  return (spec.variants[vid] || {}).node || null;
}

function variantsOf(name) {
  const spec = (dag.node_variants || {})[name];
  return spec ? { ids: Object.keys(spec.variants || {}), def: spec.default_variant_id || Object.keys(spec.variants || {})[0] } : null;
}

function refSource(value) {
  const m = typeof value === "string" && value.match(REF);
  if (!m) return null;
  const parts = m[1].split(".").map((s) => s.trim());
  return parts[0] === "inputs" ? "inputs" : parts[0];
}

// -- problems --------------------------------------------------------------------------------

function showProblems() {
  const box = $("#problems");
  const errors = problems.filter((p) => p.severity === "error");
  const warnings = problems.filter((p) => p.severity !== "error");
  box.hidden = !problems.length;
  clear(box, problems.length ? [
    el("strong", {}, errors.length ? `${errors.length} problem${errors.length > 1 ? "s" : ""} to fix` : "Warnings"),
    el("ul", {}, [...errors, ...warnings].map((p) => el("li", { class: `sev-${p.severity}`, dataset: { node: p.node || "", field: p.field || "" } },
      p.node ? el("button", { type: "button", class: "btn link", onclick: () => select({ node: p.node, variant: p.variant }) }, p.text) : p.text))),
  ] : []);
  box.classList.toggle("has-errors", errors.length > 0);
}

function problemsFor(node, variant) {
  return problems.filter((p) => p.node === node && (!p.variant || !variant || p.variant === variant));
}

// -- the graph -------------------------------------------------------------------------------

function layout() {
  const nodes = (dag.nodes || []).filter((n) => n && n.name);
  const deps = {};
  for (const n of nodes) {
    const d = definition(n.name) || {};
    deps[n.name] = [...new Set(Object.values(d.inputs || {}).map(refSource).filter(Boolean))];
  }
  const level = {};
  const depth = (name, seen = new Set()) => {
    if (level[name] !== undefined) return level[name];
    if (seen.has(name) || !deps[name]) return 1;
    seen.add(name);
    const l = 1 + Math.max(0, ...deps[name].filter((d) => d !== "inputs").map((d) => depth(d, seen)));
    level[name] = l;
    return l;
  };
  nodes.forEach((n) => depth(n.name));
  const last = 1 + Math.max(0, ...Object.values(level));
  return { nodes, deps, level, last };
}

function drawGraph() {
  const { nodes, deps, level, last } = layout();
  const W = 190, H = 46, GAP_Y = 84, PAD = 20;
  const rows = {};
  rows[0] = ["inputs"];
  nodes.forEach((n) => (rows[level[n.name]] ||= []).push(n.name));
  rows[last] = ["outputs"];
  const widest = Math.max(...Object.values(rows).map((r) => r.length));
  const width = Math.max(520, widest * (W + 30) + PAD * 2);
  const pos = {};
  for (const [l, names] of Object.entries(rows)) {
    names.forEach((name, i) => {
      const span = width / names.length;
      pos[name] = { x: span * i + span / 2 - W / 2, y: PAD + Number(l) * GAP_Y };
    });
  }
  const height = PAD * 2 + last * GAP_Y + H;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Graph of ${NAME}`);
  const mk = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const edge = (from, to) => {
    const a = pos[from], b = pos[to];
    if (!a || !b) return;
    const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y;
    svg.append(mk("path", { d: `M${x1},${y1} C${x1},${y1 + 30} ${x2},${y2 - 30} ${x2},${y2}`, class: "edge", "data-edge": `${from}->${to}` }));
  };
  for (const n of nodes) for (const d of deps[n.name]) edge(d, n.name);
  for (const spec of Object.values(dag.outputs || {})) {
    const src = refSource(spec && spec.reference);
    if (src) edge(src, "outputs");
  }
  const box = (name, label, sub, cls, onclick) => {
    const g = mk("g", { class: `gnode ${cls}`, transform: `translate(${pos[name].x},${pos[name].y})`, "data-node": name, tabindex: "0", role: "button" });
    g.append(mk("rect", { width: W, height: H, rx: 8 }), mk("text", { x: 12, y: 19, class: "gname" }, label), mk("text", { x: 12, y: 36, class: "gsub" }, sub));
    g.addEventListener("click", onclick);
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") onclick(); });
    svg.append(g);
  };
  const ioSel = selected && selected.io ? " selected" : "";
  const ioBad = problems.some((p) => /^(inputs|outputs)/.test(p.where)) ? " bad" : "";
  box("inputs", "inputs", Object.keys(dag.inputs || {}).join(", ") || "none", `io${ioSel}${ioBad}`, () => select({ io: true }));
  for (const n of nodes) {
    const d = definition(n.name) || {};
    const v = variantsOf(n.name);
    const sub = `${d.type || "?"}${v ? ` · ${v.ids.length} variants` : ""}${d.aggregation ? " · aggregation" : ""}`;
    const bad = problems.some((p) => p.node === n.name && p.severity === "error") ? " bad" : "";
    const sel = selected && selected.node === n.name ? " selected" : "";
    box(n.name, n.name, sub, `t-${d.type || "unknown"}${bad}${sel}`, () => select({ node: n.name }));
  }
  box("outputs", "outputs", Object.keys(dag.outputs || {}).join(", ") || "none", `io${ioSel}${ioBad}`, () => select({ io: true }));
  clear($("#graph"), svg);
}

// -- node and io editors --------------------------------------------------------------------

function highlight(text) {
  // role markers and Jinja tags stand out; the rest is plain text (never HTML)
  return text.split("\n").map((line) => {
    if (ROLE.test(line)) return el("span", { class: "hl-role" }, line);
    const parts = [];
    let rest = line;
    const re = /(\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\})/;
    let m;
    while ((m = rest.match(re))) {
      if (m.index) parts.push(rest.slice(0, m.index));
      parts.push(el("span", { class: "hl-jinja" }, m[0]));
      rest = rest.slice(m.index + m[0].length);
    }
    parts.push(rest);
    return el("span", {}, parts);
  }).flatMap((s, i) => (i ? ["\n", s] : [s]));
}

function fieldErrors(list, field) {
  const mine = list.filter((p) => p.field === field || (field && p.field.startsWith(`${field}.`)));
  return mine.length ? el("div", { class: "field-error", dataset: { field } }, mine.map((p) => el("div", {}, p.message))) : null;
}

function parseValue(text, old) {
  if (typeof old === "number" && text.trim() !== "" && !Number.isNaN(Number(text))) return Number(text);
  if (typeof old === "boolean" && /^(true|false)$/i.test(text.trim())) return text.trim().toLowerCase() === "true";
  return text;
}

function sourceEditor(def, nodeProblems) {
  const path = def.source && def.source.path;
  if (!path) return el("p", { class: "muted" }, "This node has no source file.");
  if (files[path] === undefined) return el("p", { class: "alert error" }, `${path} is not in the flow folder.`);
  const isPrompt = def.type === "llm" || def.type === "prompt";
  const preview = el("pre", { class: "prompt-preview", "aria-label": "Prompt with role markers highlighted" }, highlight(files[path]));
  const area = el("textarea", { class: `code-edit${isPrompt ? " prompt" : ""}`, id: "source-edit", spellcheck: "false", rows: Math.min(24, Math.max(8, files[path].split("\n").length + 1)),
    dataset: { path } });
  area.value = files[path];
  area.addEventListener("input", () => {
    files[path] = area.value;
    if (isPrompt) clear(preview, highlight(area.value));
    markDirty();
  });
  const templateErrors = nodeProblems.filter((p) => !p.field.startsWith("inputs") && p.field !== "connection" && p.field !== "api");
  return el("div", { class: "stack" },
    el("label", { class: "field" }, el("span", {}, `${isPrompt ? "Jinja prompt" : "Python source"} · ${path}`), area),
    templateErrors.length ? el("div", { class: "field-error", dataset: { field: "source" } }, templateErrors.map((p) => el("div", {}, `${p.field}: ${p.message}`))) : null,
    isPrompt ? el("div", { class: "stack" }, el("span", { class: "label" }, "Messages the model gets (role markers highlighted)"), preview) : null);
}

function inputsEditor(def, nodeProblems) {
  def.inputs ||= {};
  const rows = Object.entries(def.inputs).map(([key, value]) => {
    const input = el("input", { type: "text", value: typeof value === "string" ? value : JSON.stringify(value), dataset: { input: key },
      "aria-label": `input ${key}` });
    input.addEventListener("input", () => { def.inputs[key] = parseValue(input.value, value); markDirty(); drawGraph(); });
    const isRef = refSource(value);
    return el("div", { class: `input-row${isRef ? " is-ref" : ""}` }, el("code", {}, key), input, fieldErrors(nodeProblems, `inputs.${key}`));
  });
  const key = el("input", { type: "text", placeholder: "new input", "aria-label": "new input name" });
  const add = el("button", { type: "button", class: "btn small", onclick: () => {
    const k = key.value.trim();
    if (!k || k in def.inputs) return;
    def.inputs[k] = "";
    markDirty();
    renderEditor();
  } }, "Add input");
  return el("div", { class: "stack" }, el("span", { class: "label" }, "Inputs (values, or references such as ${inputs.url} and ${node.output})"),
    rows, el("div", { class: "row" }, key, add));
}

function llmSettings(def, nodeProblems) {
  const conn = el("input", { type: "text", id: "node-connection", value: def.connection || "" });
  conn.addEventListener("input", () => { if (conn.value) def.connection = conn.value; else delete def.connection; markDirty(); });
  const apiSel = el("select", { id: "node-api" }, ["chat", "completion"].map((a) => el("option", { value: a, selected: (def.api || "chat") === a }, a)));
  apiSel.addEventListener("change", () => { def.api = apiSel.value; markDirty(); });
  return el("div", { class: "row align-end" },
    el("label", { class: "field", style: "flex:1" }, el("span", {}, "Connection (a name not configured means the local tunery models)"), conn, fieldErrors(nodeProblems, "connection")),
    el("label", { class: "field" }, el("span", {}, "API"), apiSel, fieldErrors(nodeProblems, "api")));
}

function variantBar(name, current) {
  const v = variantsOf(name);
  const def = definition(name) || {};
  if (!v && def.type !== "llm") return null;
  const buttons = (v ? v.ids : []).map((vid) => el("button", { type: "button", role: "tab", "aria-selected": vid === current ? "true" : "false",
    dataset: { variant: vid }, onclick: () => select({ node: name, variant: vid }) }, vid, vid === v.def ? el("span", { class: "muted small" }, " (default)") : null));
  return el("div", { class: "variant-bar" },
    el("div", { class: "tabs", role: "tablist", "aria-label": "Variants" }, v ? buttons : el("span", { class: "muted small" }, "No variants yet")),
    el("div", { class: "row" },
      el("button", { type: "button", class: "btn small", id: "clone-variant", onclick: () => cloneVariant(name, current) }, v ? `Clone ${current}` : "Add variants"),
      v ? el("button", { type: "button", class: "btn small", id: "set-default", disabled: current === v.def, onclick: () => setDefault(name, current) }, "Set as default") : null));
}

function renderEditor() {
  const host = $("#editor");
  if (!selected) { clear(host, el("p", { class: "muted" }, "Pick a node, or the flow's inputs and outputs, in the graph.")); return; }
  if (selected.io) { clear(host, ioEditor()); return; }
  const name = selected.node;
  const v = variantsOf(name);
  const variant = v ? (selected.variant && v.ids.includes(selected.variant) ? selected.variant : v.def) : null;
  const def = definition(name, variant);
  if (!def) { clear(host, el("p", { class: "alert error" }, `Node ${name} has no definition.`)); return; }
  const nodeProblems = problemsFor(name, variant);
  host.dataset.node = name;
  host.dataset.variant = variant || "";
  clear(host, el("div", { class: "stack" },
    el("div", { class: "row between" }, el("h2", {}, name), el("span", { class: `badge type-${def.type}` }, def.type)),
    variantBar(name, variant),
    def.type === "llm" ? llmSettings(def, nodeProblems) : null,
    sourceEditor(def, nodeProblems),
    inputsEditor(def, nodeProblems)));
}

function ioEditor() {
  dag.inputs ||= {};
  dag.outputs ||= {};
  const inputProblems = problems.filter((p) => p.where.startsWith("inputs"));
  const outputProblems = problems.filter((p) => p.where.startsWith("outputs"));
  const inRows = Object.entries(dag.inputs).map(([name, spec]) => {
    spec = dag.inputs[name] = spec || {};
    const type = el("select", { "aria-label": `type of ${name}` }, ["string", "int", "double", "bool", "list", "object"].map((t) => el("option", { value: t, selected: (spec.type || "string") === t }, t)));
    type.addEventListener("change", () => { spec.type = type.value; markDirty(); });
    const dflt = el("input", { type: "text", value: spec.default === undefined || spec.default === null ? "" : String(spec.default), dataset: { flowInput: name }, "aria-label": `default of ${name}` });
    dflt.addEventListener("input", () => { if (dflt.value === "") delete spec.default; else spec.default = parseValue(dflt.value, spec.default); markDirty(); });
    return el("div", { class: "input-row" }, el("code", {}, name), type, dflt, fieldErrors(inputProblems.filter((p) => p.where === `inputs.${name}`), ""));
  });
  const outRows = Object.entries(dag.outputs).map(([name, spec]) => {
    spec = dag.outputs[name] = spec || {};
    const ref = el("input", { type: "text", value: spec.reference || "", dataset: { flowOutput: name }, "aria-label": `reference of ${name}` });
    ref.addEventListener("input", () => { spec.reference = ref.value; markDirty(); });
    return el("div", { class: "input-row" }, el("code", {}, name), ref, fieldErrors(outputProblems.filter((p) => p.where === `outputs.${name}`), "reference"));
  });
  return el("div", { class: "stack" }, el("h2", {}, "Flow inputs and outputs"),
    el("span", { class: "label" }, "Inputs: name, type, default"), inRows,
    el("span", { class: "label" }, "Outputs: name and reference (${node.output.key})"), outRows);
}

function select(sel) {
  selected = sel;
  drawGraph();
  renderEditor();
}

// -- saving and variants ---------------------------------------------------------------------

async function save() {
  const changed = Object.fromEntries(Object.entries(files).filter(([k, v]) => v !== flow.files[k]));
  $("#save-flow").disabled = true;
  $("#save-state").textContent = "saving…";
  try {
    adopt(await api(FLOW_URL, { method: "PUT", json: { dag, files: changed } }));
    toast("Saved: the flow is valid", "ok");
    document.body.dataset.saved = String(Date.now());
  } catch (err) {
    if (err.code === "invalid_flow") {
      problems = (err.body && err.body.problems) || [];
      $("#save-state").textContent = "not saved: fix the problems";
    } else {
      pageError(err);
      $("#save-state").textContent = "not saved";
    }
    $("#save-flow").disabled = false;
  }
  showProblems();
  drawGraph();
  renderEditor();
}

async function saveFirst() {
  if (!dirty()) return true;
  await save();
  return !dirty();
}

async function cloneVariant(node, from) {
  if (!(await saveFirst())) return;
  try {
    const answer = await api(`${FLOW_URL}/nodes/${encodeURIComponent(node)}/variants`, { method: "POST", json: { source: from || null } });
    adopt(answer);
    toast(`Added ${answer.variant} of ${node}`, "ok");
    showProblems();
    select({ node, variant: answer.variant });
  } catch (err) { showError($("#editor"), err); }
}

async function setDefault(node, variant) {
  if (!(await saveFirst())) return;
  try {
    adopt(await api(`${FLOW_URL}/nodes/${encodeURIComponent(node)}/default_variant`, { method: "PUT", json: { variant } }));
    toast(`${node} now defaults to ${variant}`, "ok");
    select({ node, variant });
  } catch (err) { showError($("#editor"), err); }
}

// -- run one input against variants -----------------------------------------------------------

function variantNodes() {
  return (dag.nodes || []).filter((n) => n.use_variants).map((n) => n.name);
}

function renderTestForm() {
  const host = $("#test-inputs");
  clear(host, Object.entries(dag.inputs || {}).map(([name, spec]) => {
    const area = el("textarea", { rows: 2, dataset: { testInput: name }, "aria-label": `input ${name}` });
    area.value = spec && spec.default !== undefined && spec.default !== null ? String(spec.default) : "";
    return el("label", { class: "field" }, el("span", {}, `${name} (${(spec && spec.type) || "string"})`), area);
  }));
  const nodeSel = $("#test-node");
  const keep = nodeSel.value;
  clear(nodeSel, el("option", { value: "" }, "none: run the flow as it is"), variantNodes().map((n) => el("option", { value: n }, n)));
  nodeSel.value = variantNodes().includes(keep) ? keep : (variantNodes()[0] || "");
  renderVariantChoice();
}

function renderVariantChoice() {
  const node = $("#test-node").value;
  const v = node ? variantsOf(node) : null;
  clear($("#test-variants"), v ? v.ids.map((vid) => el("label", { class: "chip" },
    el("input", { type: "checkbox", checked: true, dataset: { testVariant: vid } }), vid)) : []);
}

async function runTest() {
  if (!(await saveFirst())) { toast("Fix the flow before running it", "error"); return; }
  const inputs = Object.fromEntries($$("[data-test-input]").map((a) => [a.dataset.testInput, a.value]));
  const node = $("#test-node").value || null;
  const variants = node ? $$("[data-test-variant]").filter((c) => c.checked).map((c) => c.dataset.testVariant) : null;
  const host = $("#test-results");
  host.dataset.state = "running";
  clear(host, el("p", { class: "muted" }, "Running…"));
  const button = $("#run-test");
  button.disabled = true;
  try {
    const { data } = await api(`${FLOW_URL}/test`, { method: "POST", json: { inputs, node, variants, default_model: $("#test-model").value || null } });
    host.style.setProperty("--n", data.length);
    clear(host, data.map(resultColumn));
    host.dataset.state = "done";
  } catch (err) {
    clear(host);
    host.dataset.state = "error";
    showError(host, err);
  } finally { button.disabled = false; }
}

function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 1);
}

function resultColumn(r) {
  const nodes = Object.values(r.nodes || {});
  return el("div", { class: "card variant-result", dataset: { variant: r.variant || "flow", status: r.status } },
    el("div", { class: "row between" }, el("h3", {}, r.variant || "the flow"), badge(r.status)),
    el("div", { class: "muted small" }, `${fmtNumber(r.duration, 2)} s · ${r.usage.prompt_tokens} prompt + ${r.usage.completion_tokens} completion tokens`),
    r.error ? el("div", { class: "alert error" }, `${r.error.node ? `node ${r.error.node}: ` : ""}${r.error.message}`) : null,
    el("span", { class: "label" }, "Outputs"), el("pre", { class: "out", dataset: { outputs: "" } }, pretty(r.outputs)),
    nodeTable(nodes));
}

/** Each node's status, time and tokens on one row, its output on a full-width row under it: a
 * variant column is narrow, and the output is the part worth the width. */
function nodeTable(nodes) {
  const head = [["node", "node"], ["status", "status"], ["time", "num"], ["tokens", "num"]];
  return el("table", { class: "table small node-runs" },
    el("colgroup", {}, head.map(([h]) => el("col", { class: `c-${h}` }))),
    el("thead", {}, el("tr", {}, head.map(([h, cls]) => el("th", { class: cls }, h)))),
    nodes.map((n) => el("tbody", {},
      el("tr", { dataset: { nodeRun: n.node } },
        el("td", { class: "node" }, n.node), el("td", {}, badge(n.status)), el("td", { class: "num" }, `${fmtNumber(n.duration, 2)}s`),
        el("td", { class: "num" }, n.usage ? `${n.usage.prompt_tokens}+${n.usage.completion_tokens}` : "–")),
      el("tr", { class: "node-out" }, el("td", { colspan: 4 },
        el("pre", { class: `out${n.error ? " error" : ""}`, dataset: { nodeOutput: n.node } }, n.error ? n.error.message : pretty(n.output)))))));
}

// -- batch run & evaluate ----------------------------------------------------------------------

let dataColumns = [];
let evalFlows = [];
let poller = null; // the batch run's progress, watched

async function loadData(pick) {
  const { data } = await api("/v1/tunery/flow-data");
  const sel = $("#batch-data");
  const own = data.find((d) => d.id === `flow:${NAME}/data.jsonl`);
  clear(sel, data.map((d) => el("option", { value: d.id }, `${d.name} (${d.kind})`)));
  sel.value = pick || (own ? own.id : (data[0] || {}).id || "");
  await preview();
}

async function preview() {
  const id = $("#batch-data").value;
  const host = $("#data-preview");
  $("#batch-submit").disabled = true; // until the data's preview shows it can be read
  if (!id) { dataColumns = []; clear(host, el("p", { class: "muted" }, "No data yet: upload a JSONL or CSV file.")); renderMapping(); renderEvals(); return; }
  try {
    const p = await api("/v1/tunery/flow-data/preview", { query: { id, rows: 5 } });
    if ($("#batch-data").value !== id) return; // other data was picked meanwhile
    $("#batch-submit").disabled = false;
    dataColumns = p.columns;
    host.dataset.rows = p.total;
    clear(host, el("p", { class: "muted small" }, `${p.total} lines; the first ${p.rows.length}:`),
      el("table", { class: "table small" }, el("thead", {}, el("tr", {}, p.columns.map((c) => el("th", {}, c)))),
        el("tbody", {}, p.rows.map((row) => el("tr", {}, p.columns.map((c) => el("td", {}, row[c] === undefined ? "" : pretty(row[c]))))))));
  } catch (err) { dataColumns = []; clear(host); showError(host, err); }
  renderMapping();
  renderEvals();
}

function mappingSelect(id, options, chosen) {
  const sel = el("select", { id, dataset: { mapping: id } }, el("option", { value: "" }, "(default / same-named column)"),
    options.map((o) => el("option", { value: o }, o)));
  sel.value = options.includes(chosen) ? chosen : "";
  return sel;
}

function renderMapping() {
  const opts = dataColumns.map((c) => `\${data.${c}}`);
  clear($("#batch-mapping"), Object.keys(dag.inputs || {}).map((name) => el("label", { class: "field map-row" },
    el("span", {}, name), mappingSelect(`map-${name}`, opts, dataColumns.includes(name) ? `\${data.${name}}` : ""))));
}

function guessEval(input, outputs) {
  if (dataColumns.includes(input)) return `\${data.${input}}`;
  if (outputs.includes(input)) return `\${run.outputs.${input}}`;
  if (/truth|label|answer|expected/i.test(input)) {
    const col = dataColumns.find((c) => /answer|label|truth|expected/i.test(c));
    if (col) return `\${data.${col}}`;
  }
  if (/predict|output|answer/i.test(input) && outputs.length) return `\${run.outputs.${outputs[0]}}`;
  return "";
}

function renderEvals() {
  const outputs = Object.keys(dag.outputs || {});
  const opts = [...dataColumns.map((c) => `\${data.${c}}`), ...outputs.map((o) => `\${run.outputs.${o}}`),
    ...Object.keys(dag.inputs || {}).map((i) => `\${run.inputs.${i}}`)];
  const host = $("#batch-evals");
  const checked = new Set($$("[data-eval]:checked", host).map((c) => c.dataset.eval));
  clear(host, evalFlows.length ? evalFlows.map((f) => {
    const box = el("input", { type: "checkbox", dataset: { eval: f.ref }, checked: checked.has(f.ref) });
    const mapping = el("div", { class: "mapping", hidden: !checked.has(f.ref) }, f.inputs.map((i) => el("label", { class: "field map-row" },
      el("span", {}, i.name), mappingSelect(`eval-${f.ref}-${i.name}`, opts, guessEval(i.name, outputs)))));
    box.addEventListener("change", () => { mapping.hidden = !box.checked; });
    return el("div", { class: "eval-flow" }, el("label", { class: "row" }, box, el("strong", {}, f.name),
      el("span", { class: "muted small" }, f.description)), mapping);
  }) : el("p", { class: "muted" }, "No evaluation flows."));
}

async function loadEvalFlows() {
  const [gallery, mine] = await Promise.all([api("/v1/tunery/flows/gallery"), api("/v1/tunery/flows")]);
  evalFlows = [...gallery.data.filter((f) => f.evaluation).map((f) => ({ ...f, ref: `gallery:${f.name}` })),
    ...mine.data.filter((f) => f.evaluation && f.name !== NAME).map((f) => ({ ...f, ref: f.name }))];
}

function renderVariantSelect() {
  const sel = $("#batch-variant");
  const keep = sel.value;
  const opts = [el("option", { value: "" }, "the defaults")];
  for (const node of variantNodes()) for (const vid of variantsOf(node).ids) opts.push(el("option", { value: `\${${node}.${vid}}` }, `${node}: ${vid}`));
  clear(sel, opts);
  sel.value = [...sel.options].some((o) => o.value === keep) ? keep : "";
}

function collectMapping(prefix, names) {
  const out = {};
  for (const n of names) {
    const v = ($(`#${CSS.escape(prefix + n)}`) || {}).value;
    if (v) out[n] = v;
  }
  return out;
}

async function submitBatch() {
  if (!$("#batch-data").value) { toast("Pick or upload data first", "error"); return; }
  if (!(await saveFirst())) { toast("Fix the flow before running it", "error"); return; }
  const evaluations = evalFlows.filter((f) => ($(`[data-eval="${CSS.escape(f.ref)}"]`) || {}).checked).map((f) => ({
    flow: f.ref, column_mapping: collectMapping(`eval-${f.ref}-`, f.inputs.map((i) => i.name)) }));
  const body = { flow: NAME, data: $("#batch-data").value, variant: $("#batch-variant").value || null,
    column_mapping: collectMapping("map-", Object.keys(dag.inputs || {})), name: $("#batch-name").value.trim() || null,
    default_model: $("#batch-model").value || null, evaluations };
  const host = $("#batch-progress");
  try {
    const sub = await api("/v1/tunery/runs", { method: "POST", json: body });
    host.hidden = false;
    watch(sub);
  } catch (err) {
    host.hidden = false;
    clear(host);
    showError(host, err, { title: "Not started" });
  }
}

function watch(sub) {
  const host = $("#batch-progress");
  host.dataset.run = sub.name;
  host.dataset.state = "running";
  const cancel = el("button", { type: "button", class: "btn danger small", id: "batch-cancel", onclick: async () => {
    cancel.disabled = true;
    try { await api(`/v1/tunery/runs/${encodeURIComponent(sub.name)}/cancel`, { method: "POST" }); } catch (err) { showError(host, err); }
  } }, "Cancel");
  const status = el("div", { id: "batch-status" });
  const lines = el("div", { class: "line-chips", id: "batch-lines" });
  const evals = el("div", { id: "batch-eval-status", class: "stack" });
  const links = el("div", { class: "row" }, el("a", { class: "btn small", href: `/runs/${encodeURIComponent(sub.name)}` }, "Open the run"),
    el("a", { class: "btn small", href: "/runs", id: "view-run-list" }, "View run list"));
  clear(host, el("div", { class: "row between" }, el("h3", {}, `Run ${sub.name}`), cancel), status, lines, evals, links);
  if (poller) poller.stop();
  poller = poll(async () => {
    const run = await api(`/v1/tunery/runs/${encodeURIComponent(sub.name)}`);
    const s = run.submission || sub;
    const total = run.total_lines || (s.progress[sub.name] || {}).total || 0;
    const done = run.lines.length;
    const failed = run.lines.filter((l) => l.status !== "Completed").length;
    clear(status, badge(run.status), ` ${done}/${total} lines done, ${failed} failed`);
    status.dataset.status = run.status;
    clear(lines, run.lines.map((l) => el("span", { class: `line-chip ${l.status === "Completed" ? "ok" : "fail"}`, title: l.error ? l.error.message : `line ${l.line_number}`,
      dataset: { line: l.line_number, status: l.status } }, String(l.line_number))));
    clear(evals, s.evaluations.map((name) => {
      const p = s.progress[name];
      const ev = (run.evaluations || []).find((e) => e.name === name);
      const metrics = ev && Object.entries(ev.metrics || {}).map(([k, v]) => `${k} ${fmtNumber(v, 3)}`).join(" · ");
      return el("div", { class: "small", dataset: { evalRun: name, status: ev ? ev.status : "Waiting" } },
        `evaluation ${name}: `, ev ? badge(ev.status) : "waiting", p ? ` ${p.done}/${p.total}` : "", metrics ? ` · ${metrics}` : "");
    }));
    const active = ["Starting", "Running"].includes(s.status);
    cancel.hidden = !active;
    if (s.error) showError(host, new Error(s.error), { title: "The run stopped" });
    if (active) return 600;
    host.dataset.state = s.status;
    return null;
  }, { onError: (err) => showError(host, err) });
}

async function upload(file) {
  try {
    const content = await file.text();
    const d = await api("/v1/tunery/flow-data", { method: "POST", json: { name: file.name, content } });
    toast(`Uploaded ${d.name}`, "ok");
    await loadData(d.id);
  } catch (err) {
    // nothing is picked now: the previous data's preview must not stand in for the refused file
    const sel = $("#batch-data");
    if (!sel.querySelector('option[value=""]')) sel.prepend(el("option", { value: "" }, "Pick data…"));
    sel.value = "";
    dataColumns = [];
    const host = $("#data-preview");
    delete host.dataset.rows;
    clear(host);
    showError(host, err, { title: `Upload refused (${file.name})` });
    $("#batch-submit").disabled = true;
    renderMapping();
    renderEvals();
  }
}

// -- wiring ---------------------------------------------------------------------------------------

function showTab(name) {
  $$(".flow-tabs [role=tab]").forEach((t) => t.setAttribute("aria-selected", String(t.dataset.tab === name)));
  $$("[data-panel]").forEach((p) => { p.hidden = p.dataset.panel !== name; });
  if (name === "test") renderTestForm();
  if (name === "batch") { renderVariantSelect(); renderMapping(); renderEvals(); }
}

async function init() {
  adopt(await api(FLOW_URL));
  showProblems();
  const first = (dag.nodes || []).find((n) => n.use_variants) || (dag.nodes || [])[0];
  select(first ? { node: first.name } : { io: true });
  models = (await api("/v1/models")).data;
  for (const id of ["#test-model", "#batch-model"]) fillModelSelect($(id), models, { placeholder: "the flow's default" });
  $$(".flow-tabs [role=tab]").forEach((t) => t.addEventListener("click", () => showTab(t.dataset.tab)));
  $("#save-flow").addEventListener("click", save);
  $("#run-test").addEventListener("click", runTest);
  $("#test-node").addEventListener("change", renderVariantChoice);
  $("#batch-data").addEventListener("change", preview);
  $("#batch-upload").addEventListener("change", (e) => { if (e.target.files[0]) upload(e.target.files[0]); e.target.value = ""; });
  $("#batch-submit").addEventListener("click", submitBatch);
  window.addEventListener("beforeunload", (e) => { if (dirty()) e.preventDefault(); });
  await loadEvalFlows();
  await loadData();
  document.body.dataset.ready = "true";
}

init().catch((err) => { pageError(err); $("#flow-sub").textContent = errorMessage(err); });
