// The queue dashboard: renders /api/admin/overview, refreshes it on every queue change heard on
// /api/admin/events (server-sent events) and every few seconds anyway, shows live progress of
// running jobs, and drives the admin routes (cancel, prioritise, policy, pause/resume).
"use strict";

const state = { data: null, fetchedAt: 0, progress: new Map(), refreshTimer: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "onclick") node.addEventListener("click", v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

function duration(ms) {
  if (ms == null || ms < 0) return "–";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function bytes(n) {
  if (n == null) return "–";
  const gib = n / 2 ** 30;
  return gib >= 1 ? gib.toFixed(1) + " GiB" : (n / 2 ** 20).toFixed(0) + " MiB";
}

// Server time now, so ages tick between refreshes without trusting the browser's clock.
function now() {
  return state.data ? state.data.now + (Date.now() - state.fetchedAt) : Date.now();
}

// A pending job's estimated finish ("in 3 min 5 s"), with its basis as a tooltip.
function etaCell(j, t) {
  if (j.eta_finish == null) return el("td", {}, "–");
  const basis = j.eta_basis ? j.eta_basis.kind + (j.eta_basis.samples ? " (" + j.eta_basis.samples + " runs)" : "") : "";
  return el("td", { title: basis }, "in " + duration(j.eta_finish * 1000 - t));
}

function short(id) { return el("code", { title: id }, id.slice(0, 8)); }
function userName(u) { return u === "" ? "(single user)" : u; }

async function call(method, url, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  if (!response.ok) {
    const text = await response.text();
    throw new Error(method + " " + url + ": " + response.status + " " + text);
  }
  return response.json();
}

function showError(e) {
  const box = document.getElementById("error");
  box.textContent = e ? String(e.message || e) : "";
  box.hidden = !e;
}

async function act(method, url, body) {
  try {
    await call(method, url, body);
    showError(null);
  } catch (e) {
    showError(e);
  }
  refresh();
}

function fill(tableId, rows, empty) {
  const body = document.querySelector("#" + tableId + " tbody");
  const columns = document.querySelectorAll("#" + tableId + " thead th").length;
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colSpan: columns }, empty))]));
}

function progressCell(job) {
  const p = state.progress.get(job.id);
  if (!p || !p.max) return el("td", { "data-progress": "" }, "–");
  const pct = Math.max(0, Math.min(100, (100 * p.value) / p.max));
  const bar = el("span", { class: "bar" }, el("i"));
  bar.firstChild.style.width = pct.toFixed(0) + "%";
  return el("td", { "data-progress": pct.toFixed(0) }, bar, " " + p.value + "/" + p.max + (p.node ? " (node " + p.node + ")" : ""));
}

function cancelButton(job) {
  return el("button", { class: "danger", "data-action": "cancel", onclick: () => act("DELETE", "/api/jobs/" + job.id) }, "Cancel");
}

function renderJobs(d) {
  const t = now();
  fill("running", d.running.map((j) => el("tr", { "data-job": j.id },
    el("td", {}, short(j.id)), el("td", {}, userName(j.user)), el("td", {}, j.worker || "–"),
    el("td", {}, duration(t - j.started_at)), el("td", {}, duration(j.wait_ms)), progressCell(j),
    el("td", {}, j.attempts), el("td", {}, j.cancel_requested ? "cancelling…" : cancelButton(j)))), "Nothing is running.");
  fill("pending", d.pending.map((j) => el("tr", { "data-job": j.id },
    el("td", {}, j.queue_position ?? "–"), el("td", {}, short(j.id)), el("td", {}, userName(j.user)),
    el("td", {}, duration(t - j.created_at)), etaCell(j, t), el("td", {}, j.priority), el("td", {}, j.attempts),
    el("td", {},
      el("button", { "data-action": "prioritize", onclick: () => act("POST", "/api/jobs/" + j.id + "/prioritize") }, "Prioritise"),
      " ", cancelButton(j)))), "The queue is empty.");
  fill("finished", d.finished.map((j) => el("tr", { "data-job": j.id },
    el("td", {}, short(j.id)), el("td", {}, userName(j.user)), el("td", { class: "status-" + j.status }, j.status),
    el("td", {}, duration(t - j.finished_at) + " ago"), el("td", {}, j.started_at ? duration(j.wait_ms) : "–"),
    el("td", {}, duration(j.run_ms)), el("td", {}, j.attempts), el("td", {}, j.reason || ""))), "No finished jobs yet.");
}

function renderWorkers(d) {
  const t = now();
  fill("workers", d.workers.map((w) => {
    const status = w.draining ? "draining" : w.current_job ? "busy" : "idle";
    const memory = w.memory_used == null ? "–" : bytes(w.memory_used) + " / " + bytes(w.memory_total);
    return el("tr", { "data-worker": w.id, "data-status": status },
      el("td", {}, w.id), el("td", {}, w.device), el("td", {}, status),
      el("td", {}, w.current_job ? short(w.current_job) : "–"), el("td", {}, memory),
      el("td", {}, (w.loaded_models || []).join(", ") || "–"), el("td", {}, w.jobs_done),
      el("td", {}, duration(t - w.last_seen) + " ago"));
  }), "No worker is connected.");
}

function renderUsers(d) {
  const t = now();
  fill("users", d.users.map((u) => el("tr", { "data-user": u.user },
    el("td", {}, userName(u.user)), el("td", {}, u.pending), el("td", {}, u.running), el("td", {}, u.completed),
    el("td", {}, u.failed), el("td", {}, u.cancelled), el("td", {}, duration(u.max_wait_ms)),
    el("td", {}, duration(u.mean_wait_ms)), el("td", {}, duration(t - u.last_submit) + " ago"))), "No jobs yet.");
}

function render() {
  const d = state.data;
  if (!d) return;
  for (const [k, v] of Object.entries(d.counts)) document.querySelector('[data-count="' + k + '"]').textContent = v;
  document.querySelector('[data-count="workers"]').textContent = d.workers.length;
  document.getElementById("backend").textContent = d.backend + " queue";
  const policy = document.getElementById("policy");
  if (document.activeElement !== policy) policy.value = d.policy;
  const pause = document.getElementById("pause");
  pause.textContent = d.paused ? "Resume submissions" : "Pause submissions";
  pause.classList.toggle("paused", d.paused);
  pause.dataset.paused = String(d.paused);
  renderJobs(d);
  renderWorkers(d);
  renderUsers(d);
}

async function refresh() {
  try {
    const response = await fetch("/api/admin/overview");
    if (!response.ok) throw new Error("overview: " + response.status + " " + (await response.text()));
    state.data = await response.json();
    state.fetchedAt = Date.now();
    const running = new Set(state.data.running.map((j) => j.id));
    for (const id of state.progress.keys()) if (!running.has(id)) state.progress.delete(id);
    render();
    document.body.dataset.loaded = "true";
  } catch (e) {
    showError(e);
  }
}

// Coalesces bursts of change notices into one refresh.
function refreshSoon() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => { state.refreshTimer = null; refresh(); }, 150);
}

function listen() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/admin/events");
  source.addEventListener("hello", () => { live.textContent = "live"; live.classList.add("live"); });
  source.addEventListener("changed", refreshSoon);
  source.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    state.progress.set(p.job, { value: p.value, max: p.max, node: p.node });
    if (state.data && state.data.running.some((j) => j.id === p.job)) renderJobs(state.data);
    else refreshSoon();
  });
  source.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("live"); };
}

document.getElementById("policy").addEventListener("change", (e) => act("PUT", "/api/queue/policy", { policy: e.target.value }));
document.getElementById("pause").addEventListener("click", () => {
  const paused = state.data && state.data.paused;
  act("POST", paused ? "/api/queue/resume" : "/api/queue/pause");
});

refresh();
listen();
setInterval(refresh, 3000);
setInterval(render, 1000);
