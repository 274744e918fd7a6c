// Chat pieces shared by the playground and the compare page: the parameters form, a transcript
// view with streaming answers, one streamed turn with its token counts and latency (and, while a
// model's first answer waits for the server to load it, why), and the "view code" snippets
// (openai SDK Python and curl) for the same request.

import { api, apiBase, getApiKey, streamChat } from "./api.js";
import { $, clear, el, errorMessage } from "./ui.js";

export const DEFAULT_PARAMS = { temperature: 0.7, top_p: 1, max_tokens: 256, stop: [], seed: null };

const SLIDERS = [
  { key: "temperature", label: "Temperature", min: 0, max: 2, step: 0.05, help: "Higher is more varied; 0 always picks the likeliest token." },
  { key: "top_p", label: "Top P", min: 0, max: 1, step: 0.01, help: "Sample only from the smallest set of tokens whose probability adds up to this." },
  { key: "max_tokens", label: "Max tokens", min: 1, max: 4096, step: 1, help: "The longest answer, in tokens." },
];

/** The parameters form; calls onChange(values) on every edit. */
export function paramsForm(container, initial = DEFAULT_PARAMS, onChange = () => {}, { idPrefix = "p" } = {}) {
  const values = { ...DEFAULT_PARAMS, ...initial, stop: [...(initial.stop || [])] };
  const inputs = {};
  const changed = () => onChange({ ...values, stop: [...values.stop] });
  const rows = SLIDERS.map((s) => {
    const range = el("input", { type: "range", min: s.min, max: s.max, step: s.step, value: values[s.key], "aria-label": s.label, tabindex: "-1" });
    const num = el("input", { type: "number", min: s.min, max: s.max, step: s.step, value: values[s.key], id: `${idPrefix}-${s.key}`, class: "num" });
    const set = (v, from) => {
      const x = Number(v);
      if (!Number.isFinite(x)) return;
      values[s.key] = s.key === "max_tokens" ? Math.max(1, Math.round(x)) : x;
      if (from !== range) range.value = values[s.key];
      if (from !== num) num.value = values[s.key];
      changed();
    };
    range.addEventListener("input", () => set(range.value, range));
    num.addEventListener("change", () => set(num.value, num));
    inputs[s.key] = { set: (v) => set(v) };
    return el("div", { class: "param" },
      el("label", { for: `${idPrefix}-${s.key}`, title: s.help }, s.label), num, range);
  });

  // stop sequences as removable chips: a stop string may itself hold a comma or a bar
  const chips = el("div", { class: "chips" });
  const stopInput = el("input", { type: "text", id: `${idPrefix}-stop`, placeholder: values.stop.length >= 4 ? "" : "Add a stop sequence, Enter", class: "chip-input" });
  const drawChips = () => {
    clear(chips, values.stop.map((s, i) => el("span", { class: "chip" }, JSON.stringify(s).slice(1, -1),
      el("button", { type: "button", class: "chip-x", "aria-label": `Remove stop sequence ${s}`, onclick: () => { values.stop.splice(i, 1); drawChips(); changed(); } }, "×"))));
    stopInput.disabled = values.stop.length >= 4;
    stopInput.placeholder = values.stop.length >= 4 ? "At most 4" : "Add a stop sequence, Enter";
  };
  stopInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      const v = stopInput.value;
      if (v && values.stop.length < 4 && !values.stop.includes(v)) { values.stop.push(v); drawChips(); changed(); }
      stopInput.value = "";
    }
  });
  drawChips();

  const seed = el("input", { type: "number", id: `${idPrefix}-seed`, placeholder: "random", value: values.seed ?? "", class: "num wide", step: 1 });
  seed.addEventListener("change", () => {
    values.seed = seed.value === "" ? null : Math.round(Number(seed.value));
    changed();
  });

  clear(container, ...rows,
    el("div", { class: "param block" }, el("label", { for: `${idPrefix}-stop`, title: "Generation stops before any of these strings (at most 4)." }, "Stop sequences"), chips, stopInput),
    el("div", { class: "param seed" }, el("label", { for: `${idPrefix}-seed`, title: "The same seed, prompt and parameters give the same answer." }, "Seed"), seed));
  return {
    get: () => ({ ...values, stop: [...values.stop] }),
    set(v) {
      for (const k of ["temperature", "top_p", "max_tokens"]) if (v[k] !== undefined) inputs[k].set(v[k]);
      values.stop = [...(v.stop || [])];
      drawChips();
      values.seed = v.seed ?? null;
      seed.value = values.seed ?? "";
      changed();
    },
  };
}

/** The request body's generation fields from the form's values. */
export function requestParams(p) {
  const out = { temperature: p.temperature, top_p: p.top_p, max_tokens: p.max_tokens };
  if (p.stop && p.stop.length) out.stop = p.stop;
  if (p.seed !== null && p.seed !== undefined) out.seed = p.seed;
  return out;
}

export function buildMessages(system, history) {
  return [...(system && system.trim() ? [{ role: "system", content: system }] : []), ...history];
}

/** A transcript: user and assistant bubbles, answers filled in as they stream. */
export class ChatView {
  constructor(container, { emptyText = "Send a message to start chatting." } = {}) {
    this.root = container;
    this.emptyText = emptyText;
    this.reset();
  }

  reset() {
    clear(this.root, el("div", { class: "chat-empty muted" }, this.emptyText));
  }

  _add(node) {
    const empty = this.root.querySelector(".chat-empty");
    if (empty) empty.remove();
    this.root.append(node);
    this.root.scrollTop = this.root.scrollHeight;
    return node;
  }

  addUser(text) {
    return this._add(el("div", { class: "msg user", dataset: { role: "user" } },
      el("div", { class: "who" }, "You"), el("div", { class: "bubble" }, text)));
  }

  /** Mark a user message whose turn failed: it stays on screen, but the model never saw it. */
  notSent(node, note = "Not sent: the model did not see this message.") {
    node.dataset.sent = "false";
    node.append(el("div", { class: "meta not-sent" }, note));
  }

  addAssistant(label = "Assistant") {
    const body = el("div", { class: "bubble streaming" }, el("span", { class: "cursor" }));
    const meta = el("div", { class: "meta" }, "Waiting for the first token…");
    const node = this._add(el("div", { class: "msg assistant", dataset: { role: "assistant", state: "streaming" } },
      el("div", { class: "who" }, label), body, meta));
    const stick = () => {
      if (this.root.scrollHeight - this.root.scrollTop - this.root.clientHeight < 80) this.root.scrollTop = this.root.scrollHeight;
    };
    return {
      node,
      /** Say why the first token is slow in coming (`kind` is for tests and styles). */
      waiting(text, kind) {
        node.dataset.waiting = kind;
        clear(meta, el("span", { class: "spinner", "aria-hidden": "true" }), el("span", { class: "waiting-note", role: "status" }, text));
      },
      started() {
        if (!node.dataset.waiting) return;
        delete node.dataset.waiting;
        clear(meta, "Waiting for the first token…");
      },
      update(text, chunks) {
        body.textContent = text;
        body.append(el("span", { class: "cursor" }));
        node.dataset.chunks = String(chunks);
        stick();
      },
      finish(text, info) {
        body.classList.remove("streaming");
        body.textContent = text || "";
        if (!text) body.append(el("em", { class: "muted" }, "(empty answer)"));
        node.dataset.state = "done";
        delete node.dataset.waiting;
        node.dataset.chunks = String(info.chunks);
        clear(meta, ...describe(info));
        stick();
      },
      fail(err) {
        body.classList.remove("streaming");
        const partial = body.textContent;
        const stopped = err && err.name === "AbortError";
        // a stopped answer is no error: what came stays, as the conversation's answer
        clear(body, partial ? el("div", {}, partial) : null,
          stopped ? (partial ? null : el("em", { class: "muted" }, "(stopped before the first token)"))
            : el("div", { class: "alert error inline", role: "alert" }, errorMessage(err)));
        node.dataset.state = stopped ? "stopped" : "error";
        delete node.dataset.waiting;
        clear(meta, stopped ? "Stopped" : "Failed");
      },
    };
  }
}

function describe(info) {
  const u = info.usage;
  const parts = [];
  if (u) parts.push(el("span", { class: "tok", title: "prompt + completion tokens" }, `${u.prompt_tokens} in · ${u.completion_tokens} out tokens`));
  if (info.firstTokenMs !== null) parts.push(el("span", { title: "time to first token" }, `first token ${Math.round(info.firstTokenMs)} ms`));
  parts.push(el("span", { class: "latency", title: "total latency" }, `${(info.totalMs / 1000).toFixed(2)} s`));
  if (u && info.totalMs > 0 && u.completion_tokens) parts.push(el("span", {}, `${(u.completion_tokens / (info.totalMs / 1000)).toFixed(1)} tok/s`));
  if (info.finishReason) parts.push(el("span", { class: `finish finish-${info.finishReason}` }, info.finishReason === "length" ? "stopped at max tokens" : info.finishReason));
  return parts.flatMap((p, i) => (i ? [el("span", { class: "dot" }, "·"), p] : [p]));
}

// -- a model's first answer ------------------------------------------------------------------
// The server loads a model on its first request, and first builds its base's fast (compiled)
// copy when there is none: seconds for a small model, a minute for a larger one, all before the
// answer starts. GET /v1/models says which copies are built (`serving.compiled` is null until
// then), so the bubble can say so from the start; any other long wait gets a note after a while.

const models = new Map();
const SLOW_MS = 4000;

/** Keep what GET /v1/models says of each model (the pages pass the list they load). */
export function rememberModels(list) {
  for (const m of list) models.set(m.id, m);
}

/** The note for a model whose fast copy the server will build before its answer, or null. */
export function firstUseNote(model) {
  const m = models.get(model);
  const s = m && m.serving;
  if (!s || s.engine !== "onnx" || s.compiled !== null) return null;
  const base = s.adapter_of || (m.kind === "deployment" ? m.parent : m.id);
  return `Preparing the fast ${s.precision} copy of ${base}… first use only: it is built once, then kept.`;
}

/** One streamed answer into `view`; resolves to the answer text, or null when it failed. An
 * answer stopped part-way resolves to the part shown, which stays in the conversation (as in
 * other playgrounds); one stopped before its first token is a failed turn. `extra`
 * joins the request body (the playground's tools and response format); `onDone(result, node)`
 * sees the whole result (its `toolCalls`) and the answer's transcript node; `onError(err)` sees
 * why it failed. */
export async function runTurn({ view, model, system, history, params, signal, label, extra = {}, onDone = null, onError = null }) {
  const bubble = view.addAssistant(label);
  const started = performance.now();
  let firstToken = null;
  let shown = "";
  const note = firstUseNote(model);
  if (note) bubble.waiting(note, "first-use");
  const slow = note ? null : setTimeout(() => bubble.waiting(
    "Still working… a model's first answer waits while the server loads it (the very first also builds its fast copy).", "slow"), SLOW_MS);
  try {
    const result = await streamChat({ model, messages: buildMessages(system, history), ...requestParams(params), ...extra }, {
      signal,
      onStart: () => { clearTimeout(slow); bubble.started(); },
      onDelta: (_piece, partial) => {
        if (firstToken === null) firstToken = performance.now() - started;
        shown = partial.text;
        bubble.update(partial.text, partial.chunks);
      },
    });
    bubble.finish(result.text, { ...result, firstTokenMs: firstToken, totalMs: performance.now() - started });
    if (onDone) onDone(result, bubble.node);
    return result.text;
  } catch (err) {
    bubble.fail(err);
    if (err && err.name === "AbortError" && shown) return shown;
    if (onError) onError(err);
    return null;
  } finally {
    clearTimeout(slow);
    // the copy is built now (or its build failed, and the next answer says so again): ask once more,
    // before the next turn can start
    if (note) await api("/v1/models").then(({ data }) => rememberModels(data)).catch(() => {});
  }
}

// -- view code -----------------------------------------------------------------------------

function py(value, indent = 0) {
  const pad = " ".repeat(indent);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    if (value.every((v) => typeof v !== "object")) return `[${value.map((v) => py(v)).join(", ")}]`;
    return `[\n${value.map((v) => `${pad}    ${py(v, indent + 4)},`).join("\n")}\n${pad}]`;
  }
  if (value && typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${py(v, indent)}`).join(", ")}}`;
  }
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  return JSON.stringify(value); // JSON strings and numbers are valid Python literals
}

/** `extra` is what else the page sends with the request (the playground's tools, tool_choice and
 * response_format). */
export function pythonSnippet(model, messages, params, extra = {}) {
  const kw = { ...requestParams(params), ...extra };
  const lines = [`    model=${py(model)},`, `    messages=${py(messages, 4)},`,
    ...Object.entries(kw).map(([k, v]) => `    ${k}=${py(v, 4)},`), "    stream=True,"];
  const key = getApiKey() ? 'os.environ["TUNERY_API_KEY"]' : '"unused"';
  return [
    ...(getApiKey() ? ["import os", ""] : []),
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${py(apiBase())}, api_key=${key})`,
    "",
    "stream = client.chat.completions.create(",
    ...lines,
    ")",
    "for chunk in stream:",
    "    if chunk.choices and chunk.choices[0].delta.content:",
    '        print(chunk.choices[0].delta.content, end="", flush=True)',
    "print()",
  ].join("\n");
}

export function curlSnippet(model, messages, params, extra = {}) {
  const body = JSON.stringify({ model, messages, ...requestParams(params), ...extra }, null, 2);
  return [
    `curl ${apiBase()}/chat/completions \\`,
    '  -H "Content-Type: application/json" \\',
    ...(getApiKey() ? ['  -H "Authorization: Bearer $TUNERY_API_KEY" \\'] : []),
    `  -d '${body.replaceAll("'", "'\\''")}'`,
  ].join("\n");
}

/** Fill and open the view-code dialog (tabs Python / curl, copy button). */
export function showCode(dialog, model, messages, params, extra = {}) {
  const snippets = { python: pythonSnippet(model, messages, params, extra), curl: curlSnippet(model, messages, params, extra) };
  const code = $("code", dialog);
  const tabs = dialog.querySelectorAll("[data-tab]");
  const pick = (name) => {
    code.textContent = snippets[name];
    code.dataset.lang = name;
    tabs.forEach((t) => t.setAttribute("aria-selected", String(t.dataset.tab === name)));
  };
  tabs.forEach((t) => { t.onclick = () => pick(t.dataset.tab); });
  $("[data-copy]", dialog).onclick = async () => {
    try { await navigator.clipboard.writeText(code.textContent); $("[data-copy]", dialog).textContent = "Copied"; }
    catch { $("[data-copy]", dialog).textContent = "Select and copy"; }
    setTimeout(() => { $("[data-copy]", dialog).textContent = "Copy"; }, 1500);
  };
  pick("python");
  dialog.showModal();
}

/** Enter sends, Shift+Enter starts a new line. */
export function enterSends(textarea, send) {
  textarea.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
}
