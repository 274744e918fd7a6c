// The playground: one model, an editable system message that takes effect when applied,
// parameters, a streaming chat, and the same request shown as code.

import { api } from "./api.js";
import { ChatView, DEFAULT_PARAMS, buildMessages, enterSends, paramsForm, runTurn, showCode } from "./chat.js";
import { $, fillModelSelect, pageError, toast } from "./ui.js";

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
  pageError(null);
  prompt.value = "";
  history.push({ role: "user", content: text });
  view.addUser(text);
  controller = new AbortController();
  setBusy(true);
  const answer = await runTurn({ view, model: modelSelect.value, system: applied, history, params: params.get(), signal: controller.signal, label: modelSelect.value });
  if (answer === null) history.pop(); // a failed turn leaves the conversation as it was, so it can be retried
  else history.push({ role: "assistant", content: answer });
  controller = null;
  setBusy(false);
  prompt.focus();
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
  showCode($("#code-dialog"), modelSelect.value || "MODEL", buildMessages(applied, turns), params.get());
});

loadModels();
prompt.focus();
