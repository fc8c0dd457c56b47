// Live job progress on the case page, pushed over the case's websocket (/ws/cases/<pk>/,
// viewer/jobs/consumers.py): the server sends the job list whenever it changes.
// Fallback: when the socket cannot connect (or drops and cannot reconnect), the page polls the
// jobs API as before (every second while a job is active), so progress still shows behind a
// proxy that blocks websockets.
const list = document.getElementById("job-list");
const openLogs = new Set(); // jobs whose log the user opened: kept open across refreshes
const csrf = JSON.parse(document.getElementById("case-viewer-config")?.textContent || "{}").csrfToken;

function formatEta(seconds) {
  if (seconds == null) return "";
  if (seconds < 60) return `about ${Math.ceil(seconds)} s left`;
  return `about ${Math.ceil(seconds / 60)} min left`;
}

function dropFinishedJobMessages(jobs) {
  // "Analysis of … queued (job #n)" goes when job n is no longer queued or running
  for (const job of jobs) {
    if (job.status === "queued" || job.status === "running") continue;
    document.querySelectorAll(`.messages .message.job-${job.id}`).forEach((item) => item.remove());
  }
  const box = document.querySelector(".messages");
  if (box && !box.children.length) box.remove();
}

// A finished job that changes what the page shows (cells, score, a converted slide, the
// registration): the page says so and offers to show the results, keeping the viewer's place.
// It never reloads by itself: the pathologist may be drawing or writing a review.
const PAGE_KINDS = new Set(["analyze_slide", "score_case", "convert_slide", "register_pair"]);
const lastStatus = new Map(); // job id -> status seen last
const finishedHere = [];
const viewKey = list ? `ladder-case-view-${list.dataset.case}` : "";

let firstList = true;

function noteFinished(jobs) {
  for (const job of jobs) {
    const before = lastStatus.get(job.id);
    lastStatus.set(job.id, job.status);
    if (firstList) continue; // what the page was rendered with
    // active when seen last, or new since the page opened (a short job may be done before its first push)
    const wasActive = before === undefined || before === "queued" || before === "running";
    if (wasActive && (job.status === "succeeded" || job.status === "failed") && PAGE_KINDS.has(job.kind)) {
      finishedHere.push(`${job.kind_display}${job.slide_name ? ` of ${job.slide_name}` : ""} ${job.status === "failed" ? "failed" : "finished"}`);
    }
  }
  firstList = false;
  if (!finishedHere.length) return;
  let note = document.getElementById("page-stale");
  if (!note) {
    note = document.createElement("div");
    note.id = "page-stale";
    note.className = "page-stale";
    note.setAttribute("role", "status");
    const text = document.createElement("span");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Show the new results";
    button.addEventListener("click", () => {
      try {
        const state = window.caseViewer?.getState();
        if (state) sessionStorage.setItem(viewKey, JSON.stringify(state));
      } catch (error) { /* no storage: the page opens at the default view */ }
      location.reload();
    });
    note.append(text, " ", button);
    (document.querySelector("aside.sidepanel") || list.closest(".card") || document.body).prepend(note);
  }
  note.querySelector("span").textContent = `${finishedHere.join("; ")}.`;
}

function restoreView() {
  // after "Show the new results": back to where the pathologist was looking
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(viewKey) || "null");
    sessionStorage.removeItem(viewKey);
  } catch (error) { return; }
  if (!saved) return;
  const apply = (viewer) => viewer?.ready?.then(() => viewer.setState(saved, { animate: false })).catch(() => {});
  if (window.caseViewer) apply(window.caseViewer);
  else document.addEventListener("caseviewer:ready", (event) => apply(event.detail), { once: true });
}

// A failed, cancelled or not-scored job that a later job of the same kind on the same slide has
// done is history, not a problem: shown muted, "since done" (as viewer.cases.selectors.case_jobs).
const SUPERSEDABLE = new Set(["failed", "cancelled", "not_scored"]);
function supersededIds(jobs) {  // jobs: newest first
  const done = new Set(); const ids = new Set();
  for (const job of jobs) {
    const key = `${job.kind}:${job.slide}`; const outcome = job.outcome || job.status;
    if (done.has(key) && SUPERSEDABLE.has(outcome)) ids.add(job.id);
    if (outcome === "succeeded") done.add(key);
  }
  return ids;
}

function render(jobs) {
  dropFinishedJobMessages(jobs);
  noteFinished(jobs);
  const canEdit = list.dataset.canEdit === "1";
  const superseded = supersededIds(jobs);
  list.replaceChildren(...(jobs.length ? jobs : [null]).map((job) => {
    const li = document.createElement("li");
    if (!job) { li.className = "muted"; li.textContent = "No jobs yet."; return li; }
    const outcome = job.outcome || job.status;
    li.className = `job status-${outcome}${superseded.has(job.id) ? " superseded" : ""}`;
    if (superseded.has(job.id)) li.title = "A later run of the same job has done it";
    li.dataset.jobId = job.id;
    const head = document.createElement("div");
    head.className = "jobhead";
    head.innerHTML = `<strong></strong> <span class="status"></span>`;
    head.querySelector("strong").textContent = job.kind_display;
    if (job.slide_name) {  // which slide: a case has an H&E and an IHC analysis
      const slide = document.createElement("span");
      slide.className = "jobslide";
      slide.textContent = ` · ${job.slide_name}`;
      head.querySelector("strong").append(slide);
    }
    head.querySelector(".status").textContent = (job.outcome_display || job.status) + (superseded.has(job.id) ? " · since done" : "");
    const bar = document.createElement("progress");
    bar.max = 1; bar.value = job.progress;
    bar.setAttribute("aria-label", `${job.kind_display} progress`);
    const msg = document.createElement("div");
    msg.className = "muted small jobmsg";
    msg.textContent = [job.message, job.status === "running" ? formatEta(job.eta_seconds) : "", job.error].filter(Boolean).join(" · ");
    li.append(head, bar, msg);
    if (job.log) {
      const details = document.createElement("details");
      details.className = "joblog";
      const summary = document.createElement("summary");
      summary.textContent = "Log";
      const pre = document.createElement("pre");
      pre.textContent = job.log.split("\n").slice(-40).join("\n");
      details.append(summary, pre);
      details.open = openLogs.has(job.id);
      details.addEventListener("toggle", () => (details.open ? openLogs.add(job.id) : openLogs.delete(job.id)));
      li.append(details);
    }
    if (canEdit && !superseded.has(job.id) && (job.status === "queued" || job.status === "running" || job.status === "failed" || job.status === "cancelled")) {
      const action = job.status === "failed" || job.status === "cancelled" ? "retry" : "cancel";
      const button = document.createElement("button");
      button.textContent = action === "retry" ? "Retry" : "Cancel";
      button.className = "small";
      button.addEventListener("click", async () => {
        await fetch(`/api/jobs/${job.id}/${action}/`, { method: "POST", headers: { "X-CSRFToken": csrf } });
        refresh();
      });
      li.append(button);
    }
    return li;
  }));
}

let timer = null;
let polling = false;
async function poll() {
  clearTimeout(timer);
  try {
    const response = await fetch(list.dataset.api, { headers: { Accept: "application/json" } });
    if (response.ok) {
      const data = await response.json();
      const jobs = data.results || data;
      render(jobs.slice(0, 20));
      const active = jobs.some((job) => job.status === "queued" || job.status === "running");
      timer = setTimeout(poll, active ? 1000 : 10000);
      return;
    }
  } catch (error) { /* network hiccup: try again below */ }
  timer = setTimeout(poll, 5000);
}

function startPolling() {
  if (polling) return;
  polling = true;
  poll();
}

let socket = null;
let everOpened = false;
let retries = 0;
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/cases/${list.dataset.case}/`);
  socket.addEventListener("open", () => { everOpened = true; retries = 0; });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "jobs") render(message.jobs);
  });
  socket.addEventListener("close", (event) => {
    socket = null;
    if (event.code === 4401 || event.code === 4404) return; // logged out or case gone: nothing to show
    // a dropped socket reconnects a few times; one that never opened, or keeps failing, falls back to polling
    if (everOpened && retries < 5) { retries += 1; setTimeout(connect, 1000 * retries); } else startPolling();
  });
}

function refresh() {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "refresh" }));
  else if (polling) poll();
}

if (list) {
  restoreView();
  if ("WebSocket" in window && list.dataset.case) connect(); else startPolling();
}
