// One fine-tuning job: status, details, hyperparameters, live loss and accuracy charts (token
// accuracy for supervised jobs; reward accuracy and margin, TRL's names, for DPO jobs)
// (uPlot), checkpoints, events, cancel, and deploy for the result or any checkpoint. Polls the
// API while the job is active (twice a second while it trains) and stops when it ends.

import { api } from "./api.js";
import { deployedNote, openDeployDialog } from "./deploy.js";
import { $, $$, badge, clear, el, fmtDuration, fmtNumber, fmtTime, poll, showError, table, toast } from "./ui.js";

const jobId = $("#job").dataset.jobId;
const ACTIVE = new Set(["validating_files", "queued", "running", "pausing", "paused"]);
const path = `/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}`;
let job = null;
let checkpoints = [];

// -- charts --------------------------------------------------------------------------------

const COLORS = { train: "#4f46e5", valid: "#0d9488", full: "#d97706" };

class LiveChart {
  constructor(host, { keys, labels, yLabel, percent = false }) {
    this.host = host;
    this.keys = keys;
    this.labels = labels;
    this.yLabel = yLabel;
    this.percent = percent;
    this.plot = null;
    this.points = 0;
    this.updates = 0;
  }

  options(width) {
    const fmt = (v) => (v === null || v === undefined ? "–" : this.percent ? `${(v * 100).toFixed(1)}%` : v.toFixed(4));
    const series = this.keys.map((k, i) => {
      const kind = i === 0 ? "train" : i === 1 ? "valid" : "full";
      return {
        label: this.labels[i], stroke: COLORS[kind], width: kind === "full" ? 0 : 2, spanGaps: true, value: (_u, v) => fmt(v),
        points: { show: kind !== "train", size: kind === "full" ? 8 : 5, fill: COLORS[kind], stroke: COLORS[kind] },
      };
    });
    return {
      width, height: 230,
      scales: { x: { time: false }, ...(this.percent ? { y: { range: [0, 1] } } : {}) },
      axes: [
        { label: "step", stroke: "#687086", grid: { stroke: "#eef0f5" }, ticks: { stroke: "#e2e5ee" },
          incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000] },
        { label: this.yLabel, stroke: "#687086", grid: { stroke: "#eef0f5" }, ticks: { stroke: "#e2e5ee" }, size: 56,
          values: (_u, vals) => vals.map((v) => (this.percent ? `${Math.round(v * 100)}%` : +v.toFixed(3))) },
      ],
      series: [{ label: "step", value: (_u, v) => (v === null ? "–" : v) }, ...series],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
    };
  }

  /** Say why there is no curve (only while none is drawn). */
  empty(text) {
    const note = this.plot ? null : this.host.querySelector(".chart-empty");
    if (note) note.textContent = text;
  }

  update(rows) {
    const data = [rows.map((r) => r.step), ...this.keys.map((k) => rows.map((r) => (typeof r[k] === "number" ? r[k] : null)))];
    // hide series this job never reports (no validation file: no validation curves)
    const present = this.keys.map((_k, i) => data[i + 1].some((v) => v !== null));
    if (!rows.length) return;
    if (!this.plot) {
      clear(this.host);
      const opts = this.options(this.host.clientWidth || 420);
      opts.series.forEach((s, i) => { if (i > 0) s.show = present[i - 1]; });
      this.plot = new window.uPlot(opts, data, this.host);
      let width = this.host.clientWidth;
      // resize on the next frame, and only when the width changed, or the observer re-triggers itself
      new ResizeObserver(() => requestAnimationFrame(() => {
        if (this.host.clientWidth !== width) {
          width = this.host.clientWidth;
          this.plot.setSize({ width, height: 230 });
        }
      })).observe(this.host);
    } else {
      present.forEach((p, i) => { if (p && !this.plot.series[i + 1].show) this.plot.setSeries(i + 1, { show: true }); });
      this.plot.setData(data);
    }
    if (rows.length !== this.points) {
      this.points = rows.length;
      this.updates += 1;
      this.host.dataset.points = String(this.points);
      this.host.dataset.updates = String(this.updates);
    }
  }
}

const lossChart = new LiveChart($("#chart-loss"), {
  keys: ["train_loss", "valid_loss", "full_valid_loss"],
  labels: ["training", "validation", "full validation"], yLabel: "loss",
});
const ACCURACY = {
  supervised: { title: "Token accuracy", keys: ["train_mean_token_accuracy", "valid_mean_token_accuracy", "full_valid_mean_token_accuracy"] },
  dpo: { title: "Reward accuracy", keys: ["rewards/accuracies", "valid_rewards/accuracies", "full_valid_rewards/accuracies"] },
};
let accuracy = null; // the job's method's, once the job is read
let accChart = null;
const marginChart = new LiveChart($("#chart-margin"), {
  keys: ["rewards/margins", "valid_rewards/margins", "full_valid_rewards/margins"],
  labels: ["training", "validation", "full validation"], yLabel: "reward margin",
});

function chartsFor(j) {
  if (accChart) return;
  const dpo = j.method && j.method.type === "dpo";
  accuracy = ACCURACY[dpo ? "dpo" : "supervised"];
  $("#acc-title").textContent = accuracy.title;
  $("#margin-card").hidden = !dpo;
  accChart = new LiveChart($("#chart-acc"), {
    keys: accuracy.keys, labels: ["training", "validation", "full validation"], yLabel: "accuracy", percent: true,
  });
}

// -- panels --------------------------------------------------------------------------------

function kv(host, pairs) {
  clear(host, pairs.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "–")]));
}

function playgroundLink(model) {
  return el("a", { href: `/playground?model=${encodeURIComponent(model)}`, class: "mono" }, model);
}

function renderJob(j) {
  $("#job-title").textContent = j.fine_tuned_model || `Fine-tune of ${j.model}`;
  clear($("#job-status"), badge(j.status));
  document.title = `${j.status} · ${j.id} · tunery studio`;
  $("#job").dataset.status = j.status;
  $("#cancel").hidden = !ACTIVE.has(j.status);
  $("#pause").hidden = !["queued", "running"].includes(j.status);
  $("#resume").hidden = j.status !== "paused";
  $("#deploy-result").hidden = j.status !== "succeeded";
  const fileLink = (id) => (id ? el("a", { href: `/data?file=${encodeURIComponent(id)}`, class: "mono" }, id) : "none");
  const end = j.finished_at || (ACTIVE.has(j.status) ? Date.now() / 1000 : null);
  kv($("#details"), [
    ["Status", badge(j.status)],
    ["Base model", j.model],
    ["Fine-tuned model", j.fine_tuned_model ? playgroundLink(j.fine_tuned_model) : "–"],
    ["Method", `${j.method && j.method.type === "dpo" ? "DPO" : "supervised"}, ${j.training_method === "full" ? "full weights" : "LoRA"}`],
    ["Training file", fileLink(j.training_file)],
    ["Validation file", fileLink(j.validation_file)],
    ["Suffix", j.user_provided_suffix || "–"],
    ["Seed", String(j.seed ?? "–")],
    ["Created", fmtTime(j.created_at)],
    ["Finished", fmtTime(j.finished_at)],
    ["Duration", end ? fmtDuration(end - j.created_at) : "–"],
    ["Time left", j.status === "running" && j.estimated_finish ? `about ${fmtDuration(j.estimated_finish - Date.now() / 1000)}` : undefined],
    ["Trained tokens", j.trained_tokens ? fmtNumber(j.trained_tokens) : "–"],
  ]);
  const hp = j.hyperparameters || {};
  kv($("#hyperparameters"), Object.entries(hp).map(([k, v]) => [k, String(v)]));
  const errBox = $("#job-error");
  if (j.status === "failed" && j.error) {
    clear(errBox, el("div", { class: "alert error", role: "alert" }, el("strong", {}, "The job failed: "), j.error.message || JSON.stringify(j.error)));
  } else {
    clear(errBox);
  }
}

function renderProgress(rows, j) {
  const last = rows[rows.length - 1];
  const total = last && last.total_steps;
  const pct = j.status === "succeeded" ? 100 : total ? Math.min(100, (100 * last.step) / total) : 0;
  $("#progress-bar").style.width = `${pct}%`;
  $("#progress-text").textContent = last
    ? `step ${last.step} of ${total}${last.epoch ? ` · epoch ${last.epoch}` : ""}${last.tokens_per_second ? ` · ${fmtNumber(last.tokens_per_second, 0)} tokens/s` : ""}`
    : ACTIVE.has(j.status) ? (j.status === "running" ? "starting…" : j.status.replaceAll("_", " ")) : "";
  if (last && ["pausing", "paused", "failed", "cancelled"].includes(j.status)) $("#progress-text").textContent += ` · ${j.status}`;
  if (last) {
    const v = [...rows].reverse().find((r) => typeof r.valid_loss === "number");
    $("#loss-last").textContent = `training ${last.train_loss.toFixed(4)}${v ? ` · validation ${v.valid_loss.toFixed(4)}` : ""}`;
    const [train, valid] = accuracy.keys;
    $("#acc-last").textContent = `training ${(100 * last[train]).toFixed(1)}%${v && typeof v[valid] === "number" ? ` · validation ${(100 * v[valid]).toFixed(1)}%` : ""}`;
  }
}

function renderEvents(events) {
  clear($("#events"), events.map((e) => el("li", { class: `level-${e.level}`, dataset: { type: e.type } },
    el("time", {}, new Date(e.created_at * 1000).toLocaleTimeString([], { hour12: false })), el("span", {}, e.message))));
}

function renderCheckpoints(list) {
  checkpoints = list;
  const host = $("#checkpoints");
  if (!list.length) return;
  const m = (c, k) => fmtNumber(c.metrics ? c.metrics[k] : null);
  clear(host, table([
    { label: "Step", class: "num", render: (c) => String(c.step_number) },
    { label: "Checkpoint model", class: "id", render: (c) => c.fine_tuned_model_checkpoint },
    { label: "Train loss", class: "num", render: (c) => m(c, "train_loss") },
    { label: "Valid loss", class: "num", render: (c) => m(c, "valid_loss") },
    { label: "", class: "actions", render: (c) => el("div", { class: "row end nowrap" },
      el("a", { class: "btn small", href: `/playground?model=${encodeURIComponent(c.fine_tuned_model_checkpoint)}` }, "Chat"),
      el("button", { type: "button", class: "btn small", onclick: () => deploy(c.fine_tuned_model_checkpoint), dataset: { deploy: c.fine_tuned_model_checkpoint } }, "Deploy")) },
  ], list));
}

async function deploy(selected) {
  const models = [job && job.fine_tuned_model, ...checkpoints.map((c) => c.fine_tuned_model_checkpoint)].filter(Boolean);
  const dep = await openDeployDialog({ models, selected: selected || models[0] });
  if (!dep) return;
  clear($("#result-note"), deployedNote(dep));
  toast(`Deployed as ${dep.name}`, "ok");
}

// -- polling -------------------------------------------------------------------------------

async function refresh(current = () => true) {
  // the job first: when it reads as ended, the metrics fetched after it hold every step
  const j = await api(path);
  const [metrics, events, ckpts] = await Promise.all([
    api(`/v1/tunery/fine_tuning/jobs/${encodeURIComponent(jobId)}/metrics`),
    api(`${path}/events`, { query: { limit: 200 } }),
    api(`${path}/checkpoints`, { query: { limit: 100 } }),
  ]);
  if (!current()) return null; // a newer refresh (after cancel, pause or resume) draws instead
  job = j;
  renderJob(j);
  chartsFor(j);
  lossChart.update(metrics.data);
  accChart.update(metrics.data);
  if (!$("#margin-card").hidden) marginChart.update(metrics.data);
  renderProgress(metrics.data, j);
  renderEvents(events.data);
  renderCheckpoints(ckpts.data);
  if (!ACTIVE.has(j.status)) {
    // an ended job waits for nothing: say what there is not, instead of "waiting for the first step"
    const how = { failed: "failed", cancelled: "was cancelled", succeeded: "ended" }[j.status] || "ended";
    for (const chart of [lossChart, accChart, marginChart]) chart.empty(`No training step was recorded: the job ${how} before its first step.`);
    if (!ckpts.data.length) clear($("#checkpoints"), el("p", { class: "muted" }, `None: the job ${how} without saving a checkpoint.`));
  }
  return j;
}

// a passing failure (the server out of reach) is retried under a note; any other ends the polling
const poller = poll(async (current) => {
  const j = await refresh(current);
  if (!j) return null; // superseded
  // twice a second while training, so the charts move with it; slower while it waits its turn,
  // and slower still while it is paused
  return ACTIVE.has(j.status) ? { running: 500, pausing: 500, paused: 5000 }[j.status] || 1000 : null;
}, {
  onError(err) {
    showError($("#job-error"), err, { title: "Could not load the job" });
    if (err.status === 404 && !job) {
      // no such job: nothing is coming, so the empty panels must not say they wait for it
      for (const note of $$(".chart-empty")) note.textContent = "No such job.";
      clear($("#checkpoints"), el("p", { class: "muted" }, "No such job."));
      $("#job").dataset.status = "missing";
    }
  },
});

$("#cancel").addEventListener("click", async () => {
  if (!window.confirm("Cancel this job? Its checkpoints so far stay usable.")) return;
  try {
    await api(`${path}/cancel`, { method: "POST" });
    toast("Job cancelled");
    poller.now();
  } catch (err) {
    showError($("#job-error"), err, { title: "Could not cancel" });
  }
});
for (const action of ["pause", "resume"]) {
  $(`#${action}`).addEventListener("click", async () => {
    try {
      const j = await api(`${path}/${action}`, { method: "POST" });
      toast({ pausing: "Pausing: a checkpoint is saved at the step reached", paused: "Job paused" }[j.status] || "Job resumed");
      poller.now();
    } catch (err) {
      showError($("#job-error"), err, { title: `Could not ${action}` });
    }
  });
}
$("#deploy-result").addEventListener("click", () => deploy(job && job.fine_tuned_model));
