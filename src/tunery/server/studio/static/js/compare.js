// Compare: two or three models side by side. With sync on, every column gets the same system
// message, parameters and prompt, and the answers stream in parallel; with sync off, each column
// has its own settings and prompt box. The travel example's test questions are one click away.

import { api } from "./api.js";
import { ChatView, DEFAULT_PARAMS, enterSends, paramsForm, rememberModels, runTurn } from "./chat.js";
import { $, $$, clear, el, fillModelSelect, pageError, toast } from "./ui.js";

const STORE = "tunery.compare";
const saved = (() => { try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch { return {}; } })();
const save = (patch) => {
  Object.assign(saved, patch);
  try { localStorage.setItem(STORE, JSON.stringify(saved)); } catch { /* storage off */ }
};

const TAGS = ["A", "B", "C"];
const columnsHost = $("#columns");
const systemBox = $("#system");
const prompt = $("#prompt");
const syncBox = $("#sync");
let models = [];
let columns = [];
let exerciseCount = 0;
let questions = [];
let busy = 0;
let stopped = false; // Stop was pressed: the exercise asks no further question

const shared = { system: "", params: { ...DEFAULT_PARAMS, ...(saved.params || {}) } };
const sharedParams = paramsForm($("#params"), shared.params, (p) => { shared.params = p; save({ params: p }); }, { idPrefix: "cmp" });
systemBox.addEventListener("input", () => { shared.system = systemBox.value; save({ system: shared.system }); });

class Column {
  constructor(index) {
    this.index = index;
    this.history = [];
    this.conversation = 0; // clear() starts a new one: a turn still in flight must not write into it
    this.controller = null;
    this.own = { system: shared.system, params: { ...shared.params } };
    this.select = el("select", { "aria-label": `Model ${TAGS[index]}`, class: "column-model" });
    this.select.addEventListener("change", () => this.remember());
    const chat = el("div", { class: "chat", "aria-live": "polite" });
    this.settings = el("div", { class: "column-settings", hidden: true });
    this.prompt = el("textarea", { rows: "2", placeholder: `Ask ${TAGS[index]} only. Enter sends.`, "aria-label": `Prompt for column ${TAGS[index]}` });
    this.composer = el("form", { class: "composer", hidden: true, onsubmit: (e) => { e.preventDefault(); this.sendOwn(); } },
      this.prompt, el("button", { type: "submit", class: "btn primary small" }, "Send"));
    enterSends(this.prompt, () => this.sendOwn());
    this.node = el("section", { class: "card column", dataset: { column: TAGS[index] } },
      el("div", { class: "column-head" }, el("span", { class: "tag" }, TAGS[index]), this.select),
      this.settings, chat, this.composer);
    this.view = new ChatView(chat, { emptyText: "Answers appear here." });
  }

  remember() {
    const chosen = saved.models || [];
    chosen[this.index] = this.select.value;
    save({ models: chosen });
  }

  showOwnSettings(on) {
    this.settings.hidden = !on;
    this.composer.hidden = !on;
    if (on && !this.settings.childElementCount) {
      const sys = el("textarea", { rows: "3", "aria-label": `System message for ${TAGS[this.index]}` });
      sys.value = this.own.system;
      sys.addEventListener("input", () => { this.own.system = sys.value; });
      const box = el("div", { class: "params" });
      this.settings.append(el("details", {}, el("summary", { class: "small" }, "System message and parameters"),
        el("div", { class: "field", style: "margin-top:8px" }, el("span", {}, "System message"), sys), box));
      paramsForm(box, this.own.params, (p) => { this.own.params = p; }, { idPrefix: `col${this.index}` });
    }
  }

  effective() {
    return syncBox.checked ? { system: shared.system, params: shared.params } : this.own;
  }

  async ask(text) {
    if (!this.select.value) {
      this.view.addUser(text);
      this.view.addAssistant().fail(new Error("Pick a model for this column first."));
      return;
    }
    const mine = this.conversation;
    this.history.push({ role: "user", content: text });
    const sent = this.view.addUser(text);
    this.controller = new AbortController();
    setBusy(+1);
    const { system, params } = this.effective();
    const answer = await runTurn({ view: this.view, model: this.select.value, system, history: this.history,
      params, signal: this.controller.signal, label: this.select.value });
    if (mine !== this.conversation) { /* cleared meanwhile */ }
    else if (answer === null) { this.history.pop(); this.view.notSent(sent); }
    else this.history.push({ role: "assistant", content: answer });
    this.controller = null;
    setBusy(-1);
  }

  sendOwn() {
    const text = this.prompt.value.trim();
    if (!text || this.controller) return;
    this.prompt.value = "";
    this.ask(text);
  }

  stop() { if (this.controller) this.controller.abort(); }

  clear() {
    this.stop();
    this.conversation += 1;
    this.history = [];
    this.view.reset();
  }
}

function setBusy(delta) {
  busy += delta;
  $("#send").disabled = busy > 0;
  $("#stop").hidden = busy === 0;
  $("#ask-exercise").disabled = busy > 0 || !questions.length;
  $$("#questions button").forEach((b) => { b.disabled = busy > 0; });
  document.body.dataset.busy = String(busy > 0);
}

function defaultModel(i) {
  const chosen = (saved.models || [])[i];
  if (chosen && models.some((m) => m.id === chosen)) return chosen;
  // A: a base model, B: the newest fine-tune or deployment, C: the next candidate
  const base = models.filter((m) => m.kind === "base");
  const tuned = models.filter((m) => m.kind !== "base").sort((a, b) => (b.created || 0) - (a.created || 0));
  const order = [base[0], tuned[0], tuned[1] || base[1], ...models].filter(Boolean);
  const unique = [...new Map(order.map((m) => [m.id, m])).values()];
  return (unique[i] || unique[0] || {}).id;
}

function layout(n) {
  while (columns.length < n) {
    const c = new Column(columns.length);
    fillModelSelect(c.select, models, { selected: defaultModel(c.index) });
    c.showOwnSettings(!syncBox.checked);
    columns.push(c);
    columnsHost.append(c.node);
  }
  while (columns.length > n) { const c = columns.pop(); c.stop(); c.node.remove(); }
  columnsHost.style.setProperty("--n", n);
  $$("[data-columns]").forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.columns) === n)));
  save({ columns: n });
}

function applySync() {
  const on = syncBox.checked;
  for (const c of columns) {
    if (!on) c.own = { system: shared.system, params: { ...shared.params } };
    c.settings.replaceChildren();
    c.showOwnSettings(!on);
  }
  $("#composer").hidden = !on;
  $("#shared-setup").hidden = !on;
  save({ sync: on });
}

async function askAll(text) {
  pageError(null);
  await Promise.all(columns.map((c) => c.ask(text)));
}

async function sendShared() {
  const text = prompt.value.trim();
  if (!text || busy) return;
  prompt.value = "";
  await askAll(text);
  prompt.focus();
}

async function askExercise() {
  if (busy) return;
  if (!syncBox.checked) { syncBox.checked = true; applySync(); }
  columns.forEach((c) => c.clear());
  stopped = false;
  // the exercise asks its questions in order, as one conversation
  for (const q of questions.slice(0, exerciseCount)) {
    await askAll(q.question);
    if (stopped) return;
    if (columns.some((c) => c.history.length === 0 || c.history[c.history.length - 1].role !== "assistant")) {
      toast("Stopped: a column did not answer", "error");
      return;
    }
  }
}

async function loadQuestions() {
  const list = $("#questions");
  try {
    const data = await api("/v1/tunery/examples/travel/questions");
    questions = data.data;
    exerciseCount = data.exercise_questions;
    if (!saved.system) { shared.system = data.system; systemBox.value = data.system; }
    $("#ask-exercise").textContent = `Ask the exercise's ${exerciseCount} questions`;
    $("#ask-exercise").disabled = busy > 0;
    clear(list,
      el("li", { class: "sep" }, "The exercise's questions, in order"),
      questions.map((q, i) => [
        i === exerciseCount ? el("li", { class: "sep" }, "More held-out questions") : null,
        el("li", { class: q.exercise ? "exercise" : "" },
          el("button", { type: "button", dataset: { question: String(i) }, onclick: () => askAll(q.question), title: "Ask every column" },
            el("span", { class: "qn" }, String(i + 1)), el("span", {}, q.question))),
      ]));
  } catch (e) {
    clear(list, el("li", { class: "alert error" }, `Could not load the test questions: ${e.message}`));
  }
}

async function init() {
  shared.system = saved.system || "";
  systemBox.value = shared.system;
  syncBox.checked = saved.sync !== false;
  try {
    models = (await api("/v1/models")).data;
    rememberModels(models);
    if (!models.length) pageError(new Error("No models are registered. Pull one with `tunery models pull smollm2-135m-instruct`."));
  } catch (e) {
    pageError(e);
  }
  layout(saved.columns === 3 ? 3 : 2);
  applySync();
  columnsHost.dataset.ready = "true";
  await loadQuestions();
}

$("#composer").addEventListener("submit", (e) => { e.preventDefault(); sendShared(); });
enterSends(prompt, sendShared);
$("#stop").addEventListener("click", () => { stopped = true; columns.forEach((c) => c.stop()); });
$("#clear-all").addEventListener("click", () => columns.forEach((c) => c.clear()));
$("#ask-exercise").addEventListener("click", askExercise);
syncBox.addEventListener("change", applySync);
$$("[data-columns]").forEach((b) => b.addEventListener("click", () => layout(Number(b.dataset.columns))));
sharedParams.set(shared.params);
init();
