// The flows page: the gallery (GET /v1/tunery/flows/gallery) with "clone", the user's flows
// (GET /v1/tunery/flows) with open and delete, and opening a local folder in place.

import { api } from "./api.js";
import { $, clear, el, fmtTime, pageError, showError, table, toast } from "./ui.js";

function io(list) {
  return list.map((x) => x.name).join(", ") || "–";
}

async function cloneFlow(name) {
  const flow = await api("/v1/tunery/flows", { method: "POST", json: { gallery: name } });
  toast(`Cloned ${name} as ${flow.name}`, "ok");
  location.href = `/flows/${encodeURIComponent(flow.name)}`;
}

async function loadGallery() {
  const { data } = await api("/v1/tunery/flows/gallery");
  const host = $("#gallery");
  host.dataset.state = "ready";
  clear(host, data.map((f) => el("article", { class: "flow-card", dataset: { gallery: f.name } },
    el("div", { class: "row between" }, el("h3", {}, f.name), f.evaluation ? el("span", { class: "badge" }, "evaluation") : null),
    el("p", { class: "muted small" }, f.description || "No description."),
    el("dl", { class: "kv small" }, el("dt", {}, "inputs"), el("dd", {}, io(f.inputs)), el("dt", {}, "outputs"), el("dd", {}, io(f.outputs))),
    el("div", { class: "row end" }, el("button", { type: "button", class: "btn primary small", dataset: { clone: f.name },
      onclick: (e) => { e.target.disabled = true; cloneFlow(f.name).catch((err) => { e.target.disabled = false; pageError(err); }); } }, "Clone")))));
}

async function loadMine() {
  const { data } = await api("/v1/tunery/flows");
  const host = $("#my-flows");
  host.dataset.state = "ready";
  clear(host, table([
    { label: "Flow", render: (f) => el("a", { href: `/flows/${encodeURIComponent(f.name)}`, dataset: { open: f.name } }, f.name) },
    { label: "From", render: (f) => el("span", { class: "muted small" }, f.source === "link" ? `folder ${f.origin}` : (f.origin || "–")) },
    { label: "Inputs → outputs", render: (f) => `${io(f.inputs)} → ${io(f.outputs)}` },
    { label: "Created", render: (f) => fmtTime(f.created_at) },
    { label: "", class: "actions", render: (f) => el("button", { type: "button", class: "btn small danger", "aria-label": `Delete ${f.name}`,
      onclick: () => remove(f) }, f.source === "link" ? "Unlink" : "Delete") },
  ], data, { empty: "No flows yet: clone one from the gallery.", rowAttrs: (f) => ({ dataset: { flow: f.name } }) }));
}

async function remove(f) {
  const what = f.source === "link" ? `Unlink ${f.name}? Its folder stays as it is.` : `Delete the flow ${f.name} and its files?`;
  if (!confirm(what)) return;
  try {
    await api(`/v1/tunery/flows/${encodeURIComponent(f.name)}`, { method: "DELETE" });
    toast(`${f.name} removed`, "ok");
    await loadMine();
  } catch (err) { showError($("#my-flows").parentElement, err); }
}

$("#open-folder").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const flow = await api("/v1/tunery/flows", { method: "POST", json: { path: $("#open-path").value.trim() } });
    location.href = `/flows/${encodeURIComponent(flow.name)}`;
  } catch (err) { showError($("#open-folder").parentElement, err); }
});

Promise.all([loadGallery(), loadMine()]).catch(pageError);
