// Models and deployments: GET /v1/models and /v1/deployments; create and delete deployments,
// delete fine-tuned models (base models are managed with the CLI).

import { api } from "./api.js";
import { deployedNote, openDeployDialog } from "./deploy.js";
import { $, clear, el, fmtTime, pageError, table, toast } from "./ui.js";

let models = [];

// How a model is served: its precision, with the measured quality (or the fallback) on hover.
function servedAs(serving) {
  if (!serving) return "–";
  const q = serving.compiled && serving.compiled.quality;
  const label = serving.precision === "export" ? "export"
    : serving.notice ? `${serving.precision} (PyTorch)`
    : q ? `${serving.precision} · loss ${q.loss_delta >= 0 ? "+" : ""}${(q.loss_delta * 100).toFixed(2)}%`
    : serving.precision;
  return el("span", { title: serving.summary || "", dataset: { serving: serving.precision } }, label);
}

function chatLink(id) {
  return el("a", { class: "btn small", href: `/playground?model=${encodeURIComponent(id)}` }, "Chat");
}

async function deploy(selected) {
  const choices = models.filter((m) => m.kind !== "deployment").map((m) => m.id);
  if (!choices.length) { pageError(new Error("There is no model to deploy yet.")); return; }
  const dep = await openDeployDialog({ models: choices, selected });
  if (!dep) return;
  clear($("#deploy-note"), deployedNote(dep));
  await refresh();
}

async function removeDeployment(d) {
  if (!window.confirm(`Delete the deployment ${d.name}? The model ${d.model} stays.`)) return;
  try {
    await api(`/v1/deployments/${encodeURIComponent(d.name)}`, { method: "DELETE" });
    toast(`Deleted deployment ${d.name}`);
    await refresh();
  } catch (err) {
    pageError(err);
  }
}

async function removeModel(m) {
  if (!window.confirm(`Delete the fine-tuned model ${m.id} and its files?`)) return;
  try {
    await api(`/v1/models/${encodeURIComponent(m.id)}`, { method: "DELETE" });
    toast(`Deleted ${m.id}`);
    await refresh();
  } catch (err) {
    pageError(err);
  }
}

async function refresh() {
  const [m, d] = await Promise.all([api("/v1/models"), api("/v1/deployments")]);
  models = m.data;
  const deployments = d.data;
  clear($("#deployments"), table([
    { label: "Name", class: "id", render: (x) => el("strong", {}, x.name) },
    { label: "Model", class: "id", render: (x) => x.model },
    { label: "Tokens / minute", class: "num", render: (x) => (x.tpm ? x.tpm.toLocaleString() : "no limit") },
    { label: "Used last minute", class: "num", render: (x) => (x.tpm ? (x.tokens_used_last_minute ?? 0).toLocaleString() : "–") },
    { label: "Requests / minute", class: "num", render: (x) => (x.rpm ? `${(x.requests_last_minute ?? 0).toLocaleString()} of ${x.rpm.toLocaleString()}` : "no limit") },
    { label: "Content filter", render: (x) => x.content_filter + (x.blocklist && x.blocklist.length ? ` + ${x.blocklist.length} blocked` : "") },
    { label: "Served as", render: (x) => servedAs((models.find((m) => m.id === x.name) || {}).serving) },
    { label: "Created", render: (x) => fmtTime(x.created_at) },
    { label: "", class: "actions", render: (x) => el("div", { class: "row end nowrap" }, chatLink(x.name),
      el("button", { type: "button", class: "btn small danger", onclick: () => removeDeployment(x), dataset: { deleteDeployment: x.name } }, "Delete")) },
  ], deployments, { empty: "No deployments yet. Deploy a model to serve it under a name with tokens-per-minute and requests-per-minute limits.", rowAttrs: (x) => ({ dataset: { deployment: x.name } }) }));

  const tuned = models.filter((x) => x.kind === "fine-tuned");
  clear($("#finetuned"), table([
    { label: "Model", class: "id", render: (x) => x.id },
    { label: "Base", class: "id", render: (x) => x.parent || "–" }, // a fine-tuned model's long id, too
    { label: "Served as", render: (x) => servedAs(x.serving) },
    { label: "Created", render: (x) => fmtTime(x.created) },
    { label: "", class: "actions", render: (x) => el("div", { class: "row end nowrap" }, chatLink(x.id),
      el("button", { type: "button", class: "btn small", onclick: () => deploy(x.id) }, "Deploy"),
      el("button", { type: "button", class: "btn small danger", onclick: () => removeModel(x) }, "Delete")) },
  ], tuned, { empty: el("span", {}, "No fine-tuned models yet. ", el("a", { href: "/fine-tune" }, "Fine-tune one →")) }));

  const base = models.filter((x) => x.kind === "base");
  clear($("#base"), table([
    { label: "Model", class: "id", render: (x) => x.id },
    { label: "Served as", render: (x) => servedAs(x.serving) },
    { label: "Added", render: (x) => fmtTime(x.created) },
    { label: "", class: "actions", render: (x) => el("div", { class: "row end nowrap" }, chatLink(x.id),
      el("a", { class: "btn small", href: `/fine-tune?model=${encodeURIComponent(x.id)}` }, "Fine-tune"),
      el("button", { type: "button", class: "btn small", onclick: () => deploy(x.id) }, "Deploy")) },
  ], base, { empty: "No base models. Pull one with `tunery models pull smollm2-135m-instruct`." }));
}

$("#new-deployment").addEventListener("click", () => deploy());
refresh().catch(pageError);
