// The jobs list: every fine-tuning job with its status, refreshed while any is active.

import { api, listAll } from "./api.js";
import { $, badge, clear, el, fmtDuration, fmtTime, poll, table } from "./ui.js";

const ACTIVE = new Set(["validating_files", "queued", "running", "pausing", "paused"]);
let anyActive = true;
let lastRefresh = 0;

function duration(j) {
  if (j.finished_at) return fmtDuration(j.finished_at - j.created_at);
  if (j.status === "running" && j.estimated_finish) return `about ${fmtDuration(j.estimated_finish - Date.now() / 1000)} left`;
  return ACTIVE.has(j.status) ? "…" : "–";
}

async function refresh() {
  const jobs = await listAll("/v1/fine_tuning/jobs", { limit: 100, max: 300 });
  anyActive = jobs.some((j) => ACTIVE.has(j.status));
  lastRefresh = Date.now();
  const host = $("#jobs");
  host.dataset.state = "ready";
  clear(host, table([
    { label: "Job", class: "id", render: (j) => el("a", { href: `/jobs/${encodeURIComponent(j.id)}` }, j.id) },
    { label: "Base model", render: (j) => j.model },
    { label: "Fine-tuned model", class: "id", render: (j) => j.fine_tuned_model || el("span", { class: "muted" }, j.user_provided_suffix ? `suffix ${j.user_provided_suffix}` : "–") },
    { label: "Status", render: (j) => badge(j.status) },
    { label: "Created", render: (j) => fmtTime(j.created_at) },
    { label: "Duration", render: duration },
  ], jobs, {
    empty: el("span", {}, "No fine-tuning jobs yet. ", el("a", { href: "/fine-tune" }, "Start one →")),
    rowAttrs: (j) => ({ dataset: { job: j.id, status: j.status } }),
  }));
}

async function workerNote() {
  try {
    const info = await api("/v1/tunery/info");
    if (!info.worker) {
      clear($("#worker-note"), el("div", { class: "alert warn" },
        "No job worker is running for this server, so new jobs stay queued. Start one with ",
        el("code", {}, "tunery worker"), " or restart ", el("code", {}, "tunery serve"), " without --no-worker."));
    }
  } catch { /* the list itself shows API errors */ }
}

// quick refreshes while something runs, slow ones otherwise (a job may be started elsewhere)
poll(async () => {
  if (anyActive || Date.now() - lastRefresh > 15000) await refresh();
  return 2000;
});
workerNote();
