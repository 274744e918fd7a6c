// The playground: one model, an editable system message that takes effect when applied,
// parameters, functions the model may call (answered here by the user), the answer's format
// (text, a JSON object, or JSON that fits a schema), a streaming chat, and the same request
// shown as code.

import { api } from "./api.js";
import { ChatView, DEFAULT_PARAMS, buildMessages, enterSends, paramsForm, rememberModels, runTurn, showCode } from "./chat.js";
import { $, el, errorMessage, fillModelSelect, pageError, toast } from "./ui.js";

const STORE = "tunery.playground";
const saved = (() => { try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch { return {}; } })();
const save = (patch) => {
  Object.assign(saved, patch);
  try { localStorage.setItem(STORE, JSON.stringify(saved)); } catch { /* storage full or off */ }
};

const modelSelect = $("#model");
const systemBox = $("#system");
const applyButton = $("#apply-system");
const systemState = $("#system-state");
const prompt = $("#prompt");
const sendButton = $("#send");
const stopButton = $("#stop");
const view = new ChatView($("#chat"), { emptyText: "Pick a model and send a message. Answers stream in as they are generated." });

let applied = saved.system ?? "You are a helpful assistant.";
let history = [];
let conversation = 0; // Clear chat starts a new one: a turn still in flight must not write into it
let controller = null;
const params = paramsForm($("#params"), saved.params || DEFAULT_PARAMS, (p) => save({ params: p }), { idPrefix: "pg" });

systemBox.value = applied;
const syncApply = () => {
  const dirty = systemBox.value !== applied;
  applyButton.disabled = !dirty;
  systemState.textContent = dirty ? "Not applied yet" : "Applied";
};
systemBox.addEventListener("input", syncApply);
applyButton.addEventListener("click", () => {
  applied = systemBox.value;
  save({ system: applied });
  syncApply();
  toast(history.length ? "System message applied to the next answers" : "System message applied", "ok");
});
syncApply();

// -- functions: a JSON editor for `tools`, checked as it is typed --------------------------------

const toolsBox = $("#tools");
const toolChoice = $("#tool-choice");
const toolsState = $("#tools-state");
const EXAMPLE_TOOLS = [{ type: "function", function: { name: "get_weather", description: "Weather forecast for a city.",
  parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer", minimum: 1, maximum: 14 } },
    required: ["city", "days"], additionalProperties: false } } }];

/** The tools as typed: a list (maybe empty), or null with the reason shown when the JSON is wrong. */
function readTools() {
  const text = toolsBox.value.trim();
  if (!text) { toolsState.textContent = "No functions: the model answers in text."; return []; }
  try {
    const tools = JSON.parse(text);
    if (!Array.isArray(tools)) throw new Error("the tools must be a JSON list");
    const names = tools.map((t, i) => {
      if (!t || t.type !== "function" || !t.function || !t.function.name) throw new Error(`tools[${i}] needs {"type": "function", "function": {"name": ...}}`);
      return t.function.name;
    });
    toolsState.textContent = `${tools.length} function${tools.length === 1 ? "" : "s"}: ${names.join(", ")}`;
    return tools;
  } catch (e) {
    toolsState.textContent = `Not valid: ${e.message}`;
    return null;
  }
}
toolsBox.value = saved.tools || "";
toolChoice.value = saved.toolChoice || "auto";
toolsBox.addEventListener("input", () => { readTools(); save({ tools: toolsBox.value }); });
toolChoice.addEventListener("change", () => save({ toolChoice: toolChoice.value }));
$("#tools-example").addEventListener("click", () => {
  toolsBox.value = JSON.stringify(EXAMPLE_TOOLS, null, 2);
  save({ tools: toolsBox.value });
  readTools();
});
if (toolsBox.value.trim()) $("#tools-box").open = true;
readTools();

function toolFields() {
  const tools = readTools();
  return tools && tools.length ? { tools, tool_choice: toolChoice.value } : {};
}

// -- response format: text, one JSON object, or JSON held to a schema ----------------------------

const formatSelect = $("#response-format");
const schemaName = $("#schema-name");
const schemaBox = $("#schema");
const schemaStrict = $("#schema-strict");
const formatState = $("#format-state");
const formatError = $("#format-error");
const EXAMPLE_SCHEMA = { type: "object",
  properties: { city: { type: "string", maxLength: 40 }, days: { type: "integer", minimum: 1, maximum: 14 },
    sights: { type: "array", items: { type: "string", maxLength: 60 }, maxItems: 3 } },
  required: ["city", "days", "sights"], additionalProperties: false };

/** The request's `response_format` field as chosen: {} for text, or null (the reason shown
 * under the control) when the schema's name or JSON is not valid. */
function readFormat() {
  const kind = formatSelect.value;
  $("#schema-fields").hidden = kind !== "json_schema";
  $("#format-summary").textContent = kind === "text" ? "" : kind;
  if (kind === "text") { formatState.textContent = "The model answers in text."; return {}; }
  if (kind === "json_object") { formatState.textContent = "The answer is one JSON object."; return { response_format: { type: "json_object" } }; }
  try {
    const name = schemaName.value.trim();
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw new Error("name the schema: 1-64 letters, digits, _ or -");
    const text = schemaBox.value.trim();
    if (!text) throw new Error("write the schema the answer must fit, or insert the example");
    const schema = JSON.parse(text);
    if (!schema || typeof schema !== "object" || Array.isArray(schema)) throw new Error("the schema must be a JSON object");
    formatState.textContent = `The answer is JSON that fits ${name}${schemaStrict.checked ? " (strict)" : ""}.`;
    return { response_format: { type: "json_schema", json_schema: { name, schema, ...(schemaStrict.checked ? { strict: true } : {}) } } };
  } catch (e) {
    formatState.textContent = `Not valid: ${e.message}`;
    return null;
  }
}

/** The server's refusal of the response format, shown at the control (null: clear it). */
function formatProblem(err) {
  formatError.hidden = !err;
  formatError.textContent = err ? errorMessage(err) : "";
  for (const input of [formatSelect, schemaName, schemaBox]) input.removeAttribute("aria-invalid");
  if (!err) return;
  const param = err.param || "";
  const input = param.includes(".schema") ? schemaBox : param.endsWith(".json_schema") ? schemaName : formatSelect;
  input.setAttribute("aria-invalid", "true");
  $("#format-box").open = true;
}

const onFormatEdit = () => {
  formatProblem(null);
  readFormat();
  save({ format: formatSelect.value, schemaName: schemaName.value, schema: schemaBox.value, schemaStrict: schemaStrict.checked });
};
formatSelect.value = saved.format || "text";
schemaName.value = saved.schemaName ?? "trip_plan";
schemaBox.value = saved.schema || "";
schemaStrict.checked = !!saved.schemaStrict;
for (const input of [formatSelect, schemaName, schemaBox, schemaStrict]) input.addEventListener("input", onFormatEdit);
$("#schema-example").addEventListener("click", () => {
  schemaBox.value = JSON.stringify(EXAMPLE_SCHEMA, null, 2);
  if (!schemaName.value.trim()) schemaName.value = "trip_plan";
  onFormatEdit();
});
if (formatSelect.value !== "text") $("#format-box").open = true;
readFormat();

/** What the request carries beside the messages and parameters: the functions and the format. */
function extraFields() {
  return { ...toolFields(), ...(readFormat() || {}) };
}

/** Under an answer with tool calls: each call, and a box for the user to answer it as the tool.
 * Once every call is answered, the results go back to the model for its next answer. */
function showCalls(calls, node) {
  const bubble = node.querySelector(".bubble");
  const empty = bubble && bubble.querySelector("em.muted");
  if (empty) empty.remove();
  const pending = new Map();
  const panel = el("div", { class: "tool-calls" });
  for (const call of calls) {
    let args = call.function.arguments;
    try { args = JSON.stringify(JSON.parse(args), null, 2); } catch { /* shown as sent */ }
    const answer = el("textarea", { rows: "2", class: "mono", placeholder: `What ${call.function.name} returns (JSON or text)`,
      "aria-label": `Result of ${call.function.name}` });
    pending.set(call.id, answer);
    panel.append(el("div", { class: "tool-call", dataset: { callId: call.id } },
      el("div", { class: "who" }, `Calls ${call.function.name}`), el("pre", { class: "mono" }, args), answer));
  }
  const submit = el("button", { type: "button", class: "btn small primary" }, calls.length > 1 ? "Send results" : "Send result");
  submit.addEventListener("click", () => {
    if (controller) return;
    const missing = [...pending.values()].find((a) => !a.value.trim());
    if (missing) { missing.focus(); toast("Answer every call first", "error"); return; }
    for (const [id, answer] of pending) {
      history.push({ role: "tool", tool_call_id: id, content: answer.value });
      answer.disabled = true;
    }
    submit.disabled = true;
    answerTurn();
  });
  panel.append(submit);
  (bubble || node).after(panel);
  pending.values().next().value.focus();
}

async function loadModels() {
  try {
    const { data } = await api("/v1/models");
    const asked = new URLSearchParams(location.search).get("model");
    const wanted = asked || saved.model;
    rememberModels(data);
    fillModelSelect(modelSelect, data, { selected: wanted });
    if (asked && data.length && modelSelect.value !== asked) {
      // a link to a deployment or model that is gone: say so, rather than chat with another one unnoticed
      pageError(new Error(`There is no deployment or model named ${asked} (any more): pick one from the list. Chatting with ${modelSelect.value} meanwhile.`));
    }
    if (!data.length) {
      modelSelect.append(new Option("No models yet: run `tunery models pull`", ""));
      pageError(new Error("No models are registered. Pull one with `tunery models pull smollm2-135m-instruct`."));
    }
    modelSelect.dataset.ready = "true";
  } catch (e) {
    pageError(e);
  }
}
modelSelect.addEventListener("change", () => { pageError(null); save({ model: modelSelect.value }); });

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.hidden = !busy;
  modelSelect.disabled = busy;
}

async function send() {
  const text = prompt.value.trim();
  if (!text || controller) return;
  if (!modelSelect.value) { pageError(new Error("Pick a deployment or model first.")); return; }
  if (readTools() === null) { pageError(new Error("The functions are not valid JSON: fix them or clear the box.")); return; }
  if (readFormat() === null) {
    $("#format-box").open = true;
    pageError(new Error("The response format is not valid: fix its schema (see under the control) or choose text."));
    return;
  }
  pageError(null);
  formatProblem(null);
  prompt.value = "";
  const mine = conversation;
  history.push({ role: "user", content: text });
  const sent = view.addUser(text);
  if (await answerTurn() || mine !== conversation) return;
  // a failed turn leaves the conversation as it was: the message is marked as unseen by the
  // model, and goes back in the box, to be sent again with one Enter
  history.pop();
  view.notSent(sent, "Not sent: the model did not see this message. It is back in the message box.");
  if (!prompt.value.trim()) prompt.value = text;
}

/** The model's next answer to `history`; true when it came. */
async function answerTurn() {
  controller = new AbortController();
  setBusy(true);
  let calls = [];
  let node = null;
  const mine = conversation;
  const answer = await runTurn({ view, model: modelSelect.value, system: applied, history, params: params.get(), signal: controller.signal,
    label: modelSelect.value, extra: extraFields(), onDone: (result, n) => { calls = result.toolCalls.filter(Boolean); node = n; },
    onError: (err) => { if (String(err.param || "").startsWith("response_format")) formatProblem(err); } });
  if (answer !== null && mine === conversation) {
    history.push(calls.length ? { role: "assistant", content: answer || null, tool_calls: calls } : { role: "assistant", content: answer });
  }
  controller = null;
  setBusy(false);
  if (answer !== null && calls.length && mine === conversation) showCalls(calls, node);
  else prompt.focus();
  return answer !== null;
}

$("#composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
enterSends(prompt, send);
stopButton.addEventListener("click", () => controller && controller.abort());
$("#clear-chat").addEventListener("click", () => {
  if (controller) controller.abort();
  conversation += 1;
  history = [];
  view.reset();
  prompt.focus();
});
$("#view-code").addEventListener("click", () => {
  const pending = prompt.value.trim();
  const turns = [...history, { role: "user", content: pending || (history.length ? "Your next message" : "Hello!") }];
  showCode($("#code-dialog"), modelSelect.value || "MODEL", buildMessages(applied, turns), params.get(), extraFields());
});

loadModels();
prompt.focus();
