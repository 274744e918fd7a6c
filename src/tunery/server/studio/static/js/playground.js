// The playground: one model, an editable system message that takes effect when applied,
// parameters, functions the model may call (answered here by the user), a streaming chat, and
// the same request shown as code.

import { api } from "./api.js";
import { ChatView, DEFAULT_PARAMS, buildMessages, enterSends, paramsForm, runTurn, showCode } from "./chat.js";
import { $, el, fillModelSelect, pageError, toast } from "./ui.js";

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
    const wanted = new URLSearchParams(location.search).get("model") || saved.model;
    fillModelSelect(modelSelect, data, { selected: wanted });
    if (!data.length) {
      modelSelect.append(new Option("No models yet: run `tunery models pull`", ""));
      pageError(new Error("No models are registered. Pull one with `tunery models pull smollm2-135m-instruct`."));
    }
    modelSelect.dataset.ready = "true";
  } catch (e) {
    pageError(e);
  }
}
modelSelect.addEventListener("change", () => save({ model: modelSelect.value }));

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
  pageError(null);
  prompt.value = "";
  history.push({ role: "user", content: text });
  view.addUser(text);
  if (!(await answerTurn())) history.pop(); // a failed turn leaves the conversation as it was, so it can be retried
}

/** The model's next answer to `history`; true when it came. */
async function answerTurn() {
  controller = new AbortController();
  setBusy(true);
  let calls = [];
  let node = null;
  const answer = await runTurn({ view, model: modelSelect.value, system: applied, history, params: params.get(), signal: controller.signal,
    label: modelSelect.value, extra: toolFields(), onDone: (result, n) => { calls = result.toolCalls.filter(Boolean); node = n; } });
  if (answer !== null) {
    history.push(calls.length ? { role: "assistant", content: answer || null, tool_calls: calls } : { role: "assistant", content: answer });
  }
  controller = null;
  setBusy(false);
  if (answer !== null && calls.length) showCalls(calls, node);
  else prompt.focus();
  return answer !== null;
}

$("#composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
enterSends(prompt, send);
stopButton.addEventListener("click", () => controller && controller.abort());
$("#clear-chat").addEventListener("click", () => {
  if (controller) controller.abort();
  history = [];
  view.reset();
  prompt.focus();
});
$("#view-code").addEventListener("click", () => {
  const pending = prompt.value.trim();
  const turns = [...history, { role: "user", content: pending || (history.length ? "Your next message" : "Hello!") }];
  showCode($("#code-dialog"), modelSelect.value || "MODEL", buildMessages(applied, turns), params.get(), toolFields());
});

loadModels();
prompt.focus();
