// Small DOM helpers shared by every page, the API-key dialog, and the safety net that turns any
// uncaught failure into a readable message instead of a blank or frozen page.

import { ApiError, getApiKey, setApiKey } from "./api.js";

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** el("div", {class: "x", onclick: f, dataset: {a: 1}}, "text", child) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function errorMessage(err) {
  if (!err) return "Something went wrong.";
  if (err instanceof ApiError) {
    const where = err.param ? ` (${err.param})` : "";
    return `${err.message}${where}`;
  }
  if (err.name === "AbortError") return "Stopped.";
  return err.message || String(err);
}

/** An inline error box inside `container` (replacing its previous one). */
export function showError(container, err, { title } = {}) {
  const box = el("div", { class: "alert error", role: "alert" },
    title ? el("strong", {}, `${title}: `) : null, errorMessage(err));
  if (err instanceof ApiError && err.status === 401) {
    box.append(" ", el("button", { class: "btn small", type: "button", onclick: openApiKeyDialog }, "Set API key"));
  }
  const old = container.querySelector(":scope > .alert.error");
  if (old) old.replaceWith(box); else container.prepend(box);
  return box;
}

export function clearError(container) {
  const old = container.querySelector(":scope > .alert.error");
  if (old) old.remove();
}

/** The page-wide error strip under the heading. */
export function pageError(err) {
  const box = $("#page-alert");
  if (!box) return;
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = errorMessage(err);
  box.hidden = false;
}

export function toast(message, kind = "info", ms = 4000) {
  const host = $("#toasts");
  if (!host) return;
  const t = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  host.append(t);
  setTimeout(() => t.remove(), ms);
}

export function badge(status) {
  const label = String(status || "unknown").replaceAll("_", " ");
  return el("span", { class: `badge status-${status}`, dataset: { status } }, label);
}

export function fmtTime(unix, { seconds = true } = {}) {
  if (!unix) return "–";
  const d = new Date(unix * 1000);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", ...(seconds ? { second: "2-digit" } : {}) });
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function fmtNumber(x, digits = 4) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return String(x);
  return Number.isInteger(x) ? x.toLocaleString() : x.toFixed(digits);
}

/** A <table> from rows and [{label, render(row) -> node|string, class}] columns. */
export function table(columns, rows, { empty = "Nothing here yet.", rowAttrs } = {}) {
  if (!rows.length) return el("p", { class: "empty muted" }, empty);
  return el("table", { class: "table" },
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.class }, c.label)))),
    el("tbody", {}, rows.map((r) => el("tr", rowAttrs ? rowAttrs(r) : {},
      columns.map((c) => el("td", { class: c.class }, c.render(r)))))));
}

// -- polling -------------------------------------------------------------------------------

const RETRY_MS = [1000, 2000, 4000, 8000, 15000]; // the wait after 1, 2, 3, ... failures in a row
const failing = new Set(); // this page's polls failing now: the note shows while any is

/** A failure that may mend by itself: the server out of reach, a 5xx, a timeout or a rate limit. */
export function transient(err) {
  const s = err instanceof ApiError ? err.status : -1;
  return s >= 0 && (err.code === "offline" || s >= 500 || s === 408 || s === 429);
}

function connectionNote(poller, err) {
  if (err) failing.add(poller); else failing.delete(poller);
  let note = $("#connection-note");
  if (!failing.size) {
    if (note) note.hidden = true;
    return;
  }
  if (!note) {
    note = el("div", { id: "connection-note", class: "connection-note", role: "status" },
      el("span", { class: "spinner", "aria-hidden": "true" }), "Connection lost, retrying…");
    document.body.append(note);
  }
  note.title = errorMessage(err);
  note.hidden = false;
}

/**
 * Call `fn` now, and again for as long as it asks: it resolves to the milliseconds to wait before
 * the next call, or to nothing once there is nothing more to wait for (the job or run ended). `fn`
 * gets `current()`, false once a newer call (`now()`) or `stop()` has superseded this one: check
 * it before drawing what a slow answer brought, so an old state never covers a newer one. A
 * failure that may mend by itself (`transient`) is retried after 1, 2, 4, 8 and then every 15 s,
 * under a small "Connection lost, retrying…" note that goes at the next success; any other failure
 * goes to `onError` and the polling stops (a 404 will not mend). `now()` calls `fn` at once (after
 * an action), superseding a call in flight; `stop()` ends the polling.
 */
export function poll(fn, { onError = pageError } = {}) {
  const poller = {};
  let timer = null;
  let generation = 0;
  let failures = 0;
  const tick = async (mine) => {
    let next;
    try {
      next = await fn(() => mine === generation);
    } catch (err) {
      if (mine !== generation) return;
      if (!transient(err)) {
        connectionNote(poller, null);
        onError(err);
        return;
      }
      failures += 1;
      connectionNote(poller, err);
      timer = setTimeout(() => tick(mine), RETRY_MS[Math.min(failures, RETRY_MS.length) - 1]);
      return;
    }
    if (mine !== generation) return;
    failures = 0;
    connectionNote(poller, null);
    if (next) timer = setTimeout(() => tick(mine), next);
  };
  poller.now = () => { clearTimeout(timer); tick(++generation); };
  poller.stop = () => { generation += 1; clearTimeout(timer); connectionNote(poller, null); };
  poller.now();
  return poller;
}

/** Fill a <select> with the models and deployments of GET /v1/models, grouped. */
export function fillModelSelect(select, models, { selected, kinds = ["deployment", "fine-tuned", "base"], placeholder } = {}) {
  const groups = { deployment: "Deployments", "fine-tuned": "Fine-tuned models", base: "Base models" };
  const keep = select.value;
  clear(select);
  if (placeholder) select.append(el("option", { value: "" }, placeholder));
  for (const kind of kinds) {
    const items = models.filter((m) => (m.kind || "base") === kind);
    if (!items.length) continue;
    select.append(el("optgroup", { label: groups[kind] || kind },
      items.map((m) => el("option", { value: m.id }, kind === "deployment" ? `${m.id}  →  ${m.parent}` : m.id))));
  }
  const want = selected || keep;
  if (want && [...select.options].some((o) => o.value === want)) select.value = want;
}

// -- API key dialog ------------------------------------------------------------------------

export function openApiKeyDialog() {
  const dlg = $("#api-key-dialog");
  if (!dlg || dlg.open) return;
  $("#api-key-input").value = getApiKey();
  dlg.showModal();
}

function wireApiKeyDialog() {
  const dlg = $("#api-key-dialog");
  if (!dlg) return;
  $("#api-key-button").addEventListener("click", openApiKeyDialog);
  dlg.addEventListener("close", () => {
    if (dlg.returnValue === "save") { setApiKey($("#api-key-input").value.trim()); toast("API key saved; reloading…"); setTimeout(() => location.reload(), 400); }
    if (dlg.returnValue === "clear") { setApiKey(""); toast("API key forgotten"); }
  });
  window.addEventListener("tunery:unauthorized", openApiKeyDialog);
}

// -- the safety net ------------------------------------------------------------------------

window.addEventListener("error", (e) => {
  // Chromium reports a harmless ResizeObserver notice as an error event; it is no failure of ours
  if (String(e.message).includes("ResizeObserver loop")) return;
  toast(`Studio error: ${e.message}`, "error", 8000);
});
window.addEventListener("unhandledrejection", (e) => {
  if (e.reason && e.reason.name === "AbortError") return;
  toast(errorMessage(e.reason), "error", 8000);
});

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wireApiKeyDialog);
else wireApiKeyDialog();
