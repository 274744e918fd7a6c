// The studio's only way to the server: the /v1 HTTP API (as the openai SDK uses it) and tunery's
// /v1/tunery extensions. Every failure becomes an ApiError carrying the server's own message.

const KEY_STORE = "tunery.apiKey";

export class ApiError extends Error {
  constructor(message, { status = 0, param = null, code = null, type = null, body = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.param = param;
    this.code = code;
    this.type = type;
    this.body = body; // the whole error object, for fields beyond OpenAI's four (a flow's problems)
  }
}

export function getApiKey() {
  try { return localStorage.getItem(KEY_STORE) || ""; } catch { return ""; }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE);
  } catch { /* private mode: the key lasts for this page only */ }
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = getApiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function errorFrom(resp) {
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON: a proxy page or a dropped connection */ }
  const e = body && body.error;
  if (e && e.message) return new ApiError(e.message, { status: resp.status, param: e.param, code: e.code, type: e.type, body: e });
  return new ApiError(`The server answered ${resp.status} ${resp.statusText || ""}`.trim(), { status: resp.status });
}

function notifyAuth(err) {
  if (err.status === 401) window.dispatchEvent(new CustomEvent("tunery:unauthorized", { detail: err.message }));
}

function url(path, query) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, v);
  }
  return u.toString();
}

/** fetch, with an unreachable server or an error status turned into an ApiError. */
async function send(target, init) {
  let resp;
  try {
    resp = await fetch(target, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError("Cannot reach the tunery server. Is `tunery serve` still running?", { code: "offline" });
  }
  if (!resp.ok) {
    const err = await errorFrom(resp);
    notifyAuth(err);
    throw err;
  }
  return resp;
}

/** Call the API; resolves to the parsed JSON (or {as: "text"|"blob"}), rejects with ApiError. */
export async function api(path, { method = "GET", json, form, query, signal, as = "json" } = {}) {
  const init = { method, signal, headers: headers() };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (form !== undefined) {
    init.body = form;
  }
  const resp = await send(url(path, query), init);
  if (as === "text") return resp.text();
  if (as === "blob") return resp.blob();
  return resp.json();
}

/** Every item of a paginated OpenAI list (``has_more`` / ``after``). */
export async function listAll(path, { limit = 100, query = {}, max = 1000 } = {}) {
  const out = [];
  let after;
  for (;;) {
    const page = await api(path, { query: { ...query, limit, after } });
    out.push(...page.data);
    if (!page.has_more || !page.data.length || out.length >= max) return out;
    after = page.data[page.data.length - 1].id;
  }
}

/**
 * Stream a chat completion. Calls onStart() once the server answers (the model is loaded and
 * generating), onDelta(text) per content chunk, and resolves to {text, usage, finishReason,
 * chunks}. An error event inside the stream rejects with ApiError.
 */
export async function streamChat(body, { signal, onStart, onDelta } = {}) {
  const init = {
    method: "POST", signal,
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  };
  const resp = await send(url("/v1/chat/completions"), init);
  if (onStart) onStart();
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  const result = { text: "", usage: null, finishReason: null, chunks: 0, toolCalls: [] };
  let buffer = "";
  const handle = (data) => {
    if (data === "[DONE]") return true;
    const event = JSON.parse(data);
    if (event.error) throw new ApiError(event.error.message || "The stream failed", { code: event.error.code, type: event.error.type });
    if (event.usage) result.usage = event.usage;
    for (const choice of event.choices || []) {
      const piece = choice.delta && choice.delta.content;
      if (piece) {
        result.text += piece;
        result.chunks += 1;
        if (onDelta) onDelta(piece, result);
      }
      // tool calls come as OpenAI's deltas: index, id and name first, then pieces of the arguments
      for (const c of (choice.delta && choice.delta.tool_calls) || []) {
        const call = (result.toolCalls[c.index] ||= { id: "", type: "function", function: { name: "", arguments: "" } });
        if (c.id) call.id = c.id;
        if (c.function && c.function.name) call.function.name += c.function.name;
        if (c.function && c.function.arguments) call.function.arguments += c.function.arguments;
      }
      if (choice.finish_reason) result.finishReason = choice.finish_reason;
    }
    return false;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    // events are separated by a blank line; one event may arrive in several reads
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const raw = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = raw.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data && handle(data)) return result;
    }
  }
  return result;
}

/** The API base URL as a client outside the browser would write it. */
export function apiBase() {
  return `${window.location.origin}/v1`;
}
