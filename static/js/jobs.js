// Live job progress on the case page: polls the jobs API while any job is active.
const list = document.getElementById("job-list");
const openLogs = new Set(); // jobs whose log the user opened: kept open across refreshes
const csrf = JSON.parse(document.getElementById("case-viewer-config")?.textContent || "{}").csrfToken;

function formatEta(seconds) {
  if (seconds == null) return "";
  if (seconds < 60) return `about ${Math.ceil(seconds)} s left`;
  return `about ${Math.ceil(seconds / 60)} min left`;
}

function render(jobs) {
  const canEdit = list.dataset.canEdit === "1";
  list.replaceChildren(...(jobs.length ? jobs : [null]).map((job) => {
    const li = document.createElement("li");
    if (!job) { li.className = "muted"; li.textContent = "No jobs yet."; return li; }
    li.className = `job status-${job.status}`;
    li.dataset.jobId = job.id;
    const head = document.createElement("div");
    head.className = "jobhead";
    head.innerHTML = `<strong></strong> <span class="status"></span>`;
    head.querySelector("strong").textContent = job.kind_display;
    head.querySelector(".status").textContent = job.status;
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
    if (canEdit && (job.status === "queued" || job.status === "running" || job.status === "failed" || job.status === "cancelled")) {
      const action = job.status === "failed" || job.status === "cancelled" ? "retry" : "cancel";
      const button = document.createElement("button");
      button.textContent = action === "retry" ? "Retry" : "Cancel";
      button.className = "small";
      button.addEventListener("click", async () => {
        await fetch(`/api/jobs/${job.id}/${action}/`, { method: "POST", headers: { "X-CSRFToken": csrf } });
        poll();
      });
      li.append(button);
    }
    return li;
  }));
}

let timer = null;
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
if (list) poll();
