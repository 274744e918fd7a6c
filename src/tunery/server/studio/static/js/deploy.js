// The deploy dialog (job page and models page): POST /v1/deployments with a name, optional
// tokens- and requests-per-minute limits and a content-filter level.

import { api } from "./api.js";
import { $, clear, el, pageError, showError } from "./ui.js";

/** A deployment name from a model name: ft:base:suffix:abcd1234 -> suffix-abcd1234. */
export function suggestName(model) {
  const parts = model.split(":").filter(Boolean);
  const tail = parts[0] === "ft" ? parts.slice(2) : parts;
  const name = tail.join("-").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "");
  return (name || "deployment").slice(0, 100);
}

// the dialog's limits: input -> the request's field and the name the form's errors give it
const LIMITS = { "#deploy-tpm": ["tpm", "Tokens per minute"], "#deploy-rpm": ["rpm", "Requests per minute"] };

/** No error left from an earlier attempt: under the form, under the title, or on a limit field. */
function clearErrors() {
  clear($("#deploy-error"));
  pageError(null);
  for (const id of Object.keys(LIMITS)) $(id).removeAttribute("aria-invalid");
}

/** Open the dialog; resolves to the created deployment, or null when cancelled. */
export function openDeployDialog({ models, selected }) {
  const dlg = $("#deploy-dialog");
  const select = $("#deploy-model");
  const name = $("#deploy-name");
  clear(select, models.map((m) => el("option", { value: m }, m)));
  select.value = selected || models[0];
  name.value = suggestName(select.value);
  for (const id of Object.keys(LIMITS)) $(id).value = "";
  $("#deploy-filter").value = "default";
  $("#deploy-precision").value = "";
  clearErrors(); // a new dialog starts clean
  select.onchange = () => { name.value = suggestName(select.value); };
  return new Promise((resolve) => {
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      dlg.close();
      resolve(value);
    };
    $("#deploy-cancel").onclick = () => finish(null);
    dlg.onclose = () => finish(null);
    $("#deploy-form").onsubmit = async (e) => {
      e.preventDefault();
      clearErrors();
      // the form is novalidate: the browser's own bubble is easy to miss, so say it here
      const limits = {};
      for (const [id, [key, label]] of Object.entries(LIMITS)) {
        const input = $(id);
        const value = input.value.trim();
        if (input.validity.badInput || (value && !(Number.isInteger(Number(value)) && Number(value) >= 1))) {
          input.setAttribute("aria-invalid", "true");
          showError($("#deploy-error"), new Error(`${label} must be a whole number of at least 1; leave it empty for no limit.`));
          input.focus();
          return;
        }
        if (value) limits[key] = Number(value);
      }
      if (!name.value.trim()) {
        showError($("#deploy-error"), new Error("Give the deployment a name."));
        name.focus();
        return;
      }
      const body = { name: name.value.trim(), model: select.value, content_filter: $("#deploy-filter").value, ...limits };
      if ($("#deploy-precision").value) body.precision = $("#deploy-precision").value;
      $("#deploy-submit").disabled = true;
      try {
        const dep = await api("/v1/deployments", { method: "POST", json: body });
        finish(dep);
      } catch (err) {
        showError($("#deploy-error"), err);
      } finally {
        $("#deploy-submit").disabled = false;
      }
    };
    dlg.showModal();
    name.focus();
    name.select();
  });
}

/** A success note with a link to chat with the new deployment. */
export function deployedNote(dep) {
  return el("div", { class: "alert ok deployed", role: "status" },
    el("strong", {}, `Deployed ${dep.model} as ${dep.name}. `),
    el("a", { href: `/playground?model=${encodeURIComponent(dep.name)}`, id: "chat-with-deployment" }, "Chat with it in the playground →"));
}
