// Tumour-board presentation mode: the driver's view goes out over a websocket, followers follow.
// Protocol: see viewer/board/consumers.py and docs/board.md. No build step, no CDN.

const config = JSON.parse(document.getElementById('board-config').textContent);
const $ = (id) => document.getElementById(id);
const root = $('board');
const SEND_INTERVAL_MS = 50;   // at most 20 state messages per second from the driver (see docs/board.md)
const DEG = Math.PI / 180;

const board = {
  you: config.you,
  presenter: config.presenter,
  driver: config.driver,
  attached: true,
  latest: null,           // latest {state, seq} received
  restore: null,          // driver's own state from before a reload (hello)
  helloSeen: false,
  viewer: null,
  socket: null,
  participants: [],
  pointer: null,          // driver: {x, y} in H&E level-0 px, or null
  activeSlide: config.slides.length ? config.slides[0].id : null,
  attribution: null,
  navigating: false,
  lastSent: 0,
  sendTimer: null,
  overlaysJson: 'null',
  received: 0,
  annotation: null,       // driver: the annotation outlined for everyone (static/board/discussion.js)
};
window.caseBoard = board;  // for tests and debugging

const isEnded = () => root.dataset.ended === '1';
const isDriver = () => !isEnded() && board.driver === board.you;

// ----- small helpers

function toast(message, kind = 'info') {
  const el = $('board-toast');
  el.textContent = message;
  el.dataset.kind = kind;
  el.hidden = false;
  el.title = 'Click to close';
  el.onclick = () => { el.hidden = true; };
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

function applyAlignment(a, p) {
  const c = Math.cos(a.rotation * DEG); const s = Math.sin(a.rotation * DEG);
  return { x: a.scale * (c * p.x - s * p.y) + a.offset_x, y: a.scale * (s * p.x + c * p.y) + a.offset_y };
}

function invertAlignment(a, p) {
  const c = Math.cos(a.rotation * DEG); const s = Math.sin(a.rotation * DEG);
  const dx = (p.x - a.offset_x) / a.scale; const dy = (p.y - a.offset_y) / a.scale;
  return { x: c * dx + s * dy, y: -s * dx + c * dy };
}

function overlaysState() {
  try { return window.caseOverlays?.getState ? window.caseOverlays.getState() : null; } catch { return null; }
}

function caseUrl(casePk) { return `${config.pageUrl}?case=${encodeURIComponent(casePk)}`; }

// ----- websocket

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(`${scheme}//${location.host}${config.wsPath}`);
  board.socket = socket;
  setStatus('Connecting…', false);
  socket.addEventListener('message', (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    onMessage(message);
  });
  socket.addEventListener('close', (event) => {
    // 4409: the presenter ended the session; it is read-only now (viewer/board/consumers.py)
    if (event.code === 4409) { markEnded(); return; }
    const final = { 4401: 'Logged out', 4404: 'No such session' };
    setStatus(final[event.code] || 'Reconnecting…', false);
    if (final[event.code] || board.navigating) return;
    setTimeout(connect, 1500);
  });
}

function send(message) {
  if (board.socket && board.socket.readyState === WebSocket.OPEN) {
    board.socket.send(JSON.stringify(message));
    return true;
  }
  return false;
}

function setStatus(text, connected) {
  $('board-status').textContent = text;
  root.dataset.connected = connected ? '1' : '0';
}

function onMessage(message) {
  switch (message.type) {
    case 'hello':
      board.driver = message.driver;
      board.participants = message.participants || [];
      board.driverName = message.driver_name;
      board.helloSeen = true;
      if (message.latest && !board.started) board.restore = message.latest.state;  // the view before a reload
      setStatus('Live', true);
      updateRole();
      if (isDriver()) startDriving();
      break;
    case 'state':
      board.received += 1;
      board.latest = { state: message.state, seq: message.seq };
      if (message.driver !== undefined && message.driver !== board.driver) { board.driver = message.driver; updateRole(); }
      if (!isDriver() && board.attached) {
        applyState(message.state);
      }
      break;
    case 'handover': {
      const wasDriver = isDriver();
      board.driver = message.driver;
      board.driverName = message.driver_name;
      updateRole();
      toast(message.driver === board.you ? 'You drive the board now.' : `${message.driver_name} drives the board now.`);
      if (!wasDriver && isDriver()) { board.started = false; board.restore = null; startDriving(); }
      if (wasDriver && !isDriver()) { board.pointer = null; }
      break;
    }
    case 'participants':
      board.participants = message.participants || [];
      updateRole();
      break;
    case 'record':  // a snapshot or summary someone added: listed live, no reload
      if (message.record) addRecord(message.record);
      break;
    case 'error':
      toast(message.error, 'error');
      break;
    case 'ended':
      markEnded();
      break;
    default:
      break;
  }
}

// ----- following

function applyState(state) {
  if (!state) return;
  if (state.case != null && state.case !== config.caseId) {
    if (!board.navigating) {
      board.navigating = true;
      location.assign(caseUrl(state.case));
    }
    return;
  }
  const viewer = board.viewer;
  if (viewer && state.viewport && state.viewport.center && state.viewport.zoom > 0) {
    viewer.setState(state.viewport, { animate: false });
  }
  if (state.overlays != null && window.caseOverlays?.setState) {
    const json = JSON.stringify(state.overlays);
    if (json !== board.appliedOverlays) {  // only changes: the overlay module redraws on setState
      board.appliedOverlays = json;
      try { window.caseOverlays.setState(state.overlays); } catch (error) { console.error('overlay state', error); }
    }
  }
  if ((state.attribution || null) !== board.appliedAttribution) {
    board.appliedAttribution = state.attribution || null;
    highlightAttribution(board.appliedAttribution);
  }
  if ((state.annotation ?? null) !== board.appliedAnnotation) {
    board.appliedAnnotation = state.annotation ?? null;
    board.annotation = board.appliedAnnotation;  // what this user sees, passed on if they take over
    window.boardDiscussion?.outline(board.appliedAnnotation);
  }
  drawPointer(state.pointer || null);
}

function setAttached(attached) {
  board.attached = attached;
  root.dataset.attached = attached ? '1' : '0';
  $('board-detach').setAttribute('aria-pressed', String(!attached));
  $('board-detach').textContent = attached ? 'Detach' : 'Re-attach';
  updateRole();
  if (attached && board.latest && !isDriver()) {
    board.appliedOverlays = undefined;
    board.appliedAttribution = undefined;
    board.appliedAnnotation = undefined;
    applyState(board.latest.state);
  }
  if (!attached) drawPointer(null);
}

// ----- driving

function currentState() {
  return {
    case: config.caseId,
    slide: board.activeSlide,
    viewport: board.viewer ? board.viewer.getState() : null,
    overlays: overlaysState(),
    attribution: board.attribution,
    annotation: board.annotation,
    pointer: board.pointer,
  };
}

// The annotation outlined on the slides (discussion.js draws it): the driver's goes to everyone.
board.setAnnotation = (annotationId) => {
  board.annotation = annotationId ?? null;
  sendStateNow();
};

function sendStateNow() {
  clearTimeout(board.sendTimer);
  board.sendTimer = null;
  if (!isDriver() || !board.started) return;
  board.lastSent = performance.now();
  send({ type: 'state', state: currentState() });
}

function scheduleSend() {
  if (!isDriver() || !board.started || board.sendTimer) return;
  const wait = Math.max(0, SEND_INTERVAL_MS - (performance.now() - board.lastSent));
  board.sendTimer = setTimeout(sendStateNow, wait);
}

async function startDriving() {
  if (board.started) return;
  if (config.slides.length) await viewerReady();
  if (!isDriver()) return;
  const restore = board.restore;
  if (restore && restore.case === config.caseId && restore.viewport && board.viewer) {
    board.viewer.setState(restore.viewport, { animate: false });
    board.attribution = restore.attribution || null;
    highlightAttribution(board.attribution);
    board.annotation = restore.annotation ?? null;
    window.boardDiscussion?.outline(board.annotation);
    if (restore.overlays != null && window.caseOverlays?.setState) {
      try { window.caseOverlays.setState(restore.overlays); } catch { /* the overlay module decides */ }
    }
  }
  board.started = true;
  drawPointer(null);
  sendStateNow();
}

function goToCase(casePk) {
  if (!casePk || Number(casePk) === config.caseId) return;
  if (isEnded()) { location.assign(caseUrl(casePk)); return; }  // read-only: everyone browses alone
  if (!isDriver()) { toast('Only the driver changes the case.', 'error'); return; }
  board.navigating = true;
  send({ type: 'state', state: { case: Number(casePk), slide: null, viewport: null, overlays: null, attribution: null, annotation: null, pointer: null } });
  const socket = board.socket;
  const started = performance.now();
  const go = () => {
    if (socket && socket.bufferedAmount > 0 && performance.now() - started < 1000) { setTimeout(go, 20); return; }
    location.assign(caseUrl(casePk));
  };
  setTimeout(go, 30);
}

// ----- pointer dot (drawn on followers, on every pane)

const pointerDots = [];

function drawPointer(pointer) {
  board.shownPointer = pointer;
  const viewer = board.viewer;
  if (!viewer) return;
  viewer.panes.forEach((pane, index) => {
    let dot = pointerDots[index];
    if (!dot) {
      dot = document.createElement('div');
      dot.className = 'board-pointer';
      dot.setAttribute('aria-hidden', 'true');
      pane.overlayRoot.appendChild(dot);
      pointerDots[index] = dot;
    }
    let point = pointer;
    if (point && index > 0) point = index === 1 && viewer.alignment ? applyAlignment(viewer.alignment, point) : null;
    if (!point) { dot.hidden = true; return; }
    const at = pane.imageToElement(point);
    dot.hidden = false;
    dot.style.transform = `translate(${at.x}px, ${at.y}px)`;
  });
}

function trackPointer(viewer) {
  viewer.panes.forEach((pane, index) => {
    const element = pane.viewer.element;
    element.addEventListener('pointermove', (event) => {
      if (!isDriver()) return;
      const rect = pane.overlayRoot.getBoundingClientRect();
      let point = pane.elementToImage({ x: event.clientX - rect.left, y: event.clientY - rect.top });
      if (index > 0) {
        if (index !== 1 || !viewer.alignment) return;
        point = invertAlignment(viewer.alignment, point);
      }
      board.pointer = { x: Math.round(point.x * 10) / 10, y: Math.round(point.y * 10) / 10 };
      board.activeSlide = pane.slide?.id ?? board.activeSlide;
      scheduleSend();
    }, true);
    element.addEventListener('pointerleave', () => {
      if (!isDriver()) return;
      board.pointer = null;
      scheduleSend();
    });
    pane.viewer.addHandler('update-viewport', () => {
      if (pointerDots[index] && board.shownPointer) drawPointer(board.shownPointer);
    });
  });
}

// ----- attributions

function highlightAttribution(feature) {
  for (const item of document.querySelectorAll('#board-attributions li[data-feature]')) {
    const on = item.dataset.feature === feature;
    item.classList.toggle('selected', on);
    item.setAttribute('aria-pressed', String(on));
  }
  if (window.caseOverlays?.selectAttribution) {
    try { window.caseOverlays.selectAttribution(feature); } catch { /* optional */ }
  }
}

function onAttributionClick(item) {
  if (!isDriver()) return;
  board.attribution = board.attribution === item.dataset.feature ? null : item.dataset.feature;
  highlightAttribution(board.attribution);
  sendStateNow();
}

// ----- role and controls

function updateRole() {
  const driving = isDriver();
  root.dataset.role = driving ? 'driver' : 'follower';
  for (const id of ['board-prev', 'board-next']) {
    const button = $(id);
    button.disabled = !(driving || isEnded()) || !button.dataset.case;
  }
  $('board-jump').disabled = !(driving || isEnded());
  if (isEnded()) {
    $('board-role').textContent = 'Browse the cases and the record on your own';
    return;
  }
  const name = board.driverName || 'the presenter';
  $('board-role').textContent = driving ? 'You are presenting' : board.attached ? `Following ${name}` : `Detached from ${name}`;
  $('board-detach').hidden = driving;
  $('board-take').hidden = driving || board.you !== board.presenter;  // the driver has the controls already
  $('board-handover-box').hidden = !driving;
  fillHandover();
}

function fillHandover() {
  // who can take over: the others connected now with a role that may present
  const select = $('board-handover-to');
  const previous = select.value;
  const others = board.participants.filter((p) => p.id !== board.you && p.connected !== false && p.can_present !== false);
  if (others.length) {
    select.replaceChildren(...others.map((p) => new Option(p.username, String(p.id))));
    if (others.some((p) => String(p.id) === previous)) select.value = previous;
  } else {
    // said in the control itself: an empty drop-down reads as a broken one
    select.replaceChildren(new Option('Nobody else connected', ''));
  }
  select.disabled = others.length === 0;
  $('board-handover').disabled = others.length === 0;
}

function markEnded() {
  // the session ended (here or by the presenter elsewhere): read-only, nobody drives
  if (root.dataset.ended === '1' && board.endedShown) return;
  board.endedShown = true;
  root.dataset.ended = '1';
  board.navigating = true;  // never reconnect
  clearTimeout(board.sendTimer);
  for (const id of ['board-presence', 'board-caption', 'board-snapshot', 'board-summary', 'board-end']) {
    const element = $(id);
    if (element) element.hidden = true;
  }
  $('board-ended').hidden = false;
  setStatus('Ended', false);
  drawPointer(null);
  updateRole();
  toast('This board has ended; its record is read-only.');
}

async function endBoard() {
  const button = $('board-end');
  button.disabled = true;
  try {
    await postJson(config.endUrl, {});
    markEnded();
  } catch (error) {
    toast(`Could not end the board: ${error.message}`, 'error');
  } finally {
    button.disabled = false;
  }
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-CSRFToken': config.csrfToken },
    credentials: 'same-origin',
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || JSON.stringify(data) || `HTTP ${response.status}`);
  return data;
}

// A record comes twice to the one who made it (the API's answer and the websocket's news), once to
// everyone else; listed once, as the page's template lists it.
function addRecord(record) {
  const list = $('board-records');
  const listed = list.querySelector(`li[data-record-id="${CSS.escape(String(record.id))}"]`);
  if (listed) {  // the server's time (its time zone, as the template's) wins over the browser's
    if (record.created_time && listed.querySelector('.record-time')) listed.querySelector('.record-time').textContent = record.created_time;
    return;
  }
  list.querySelector('.board-none')?.remove();
  const item = document.createElement('li');
  item.dataset.recordId = record.id;
  const link = document.createElement('a');
  link.href = record.url;
  link.target = '_blank';
  link.rel = 'noopener';
  link.textContent = record.kind === 'snapshot' ? 'Snapshot (PNG)' : 'Case summary (PDF)';
  item.append(link, ` · ${record.case_id}${record.caption ? ` · ${record.caption}` : ''}`);
  const time = record.created_time || (record.created_at ? new Date(record.created_at).toTimeString().slice(0, 5) : '');
  if (time) {
    const stamp = document.createElement('span');
    stamp.className = 'muted small record-time';
    stamp.textContent = time;
    item.append(' ', stamp);
  }
  list.append(item);
}

function overlayLayers(state, paneIndex) {
  // The overlay module's getState(): {panes: [{<layer>: {visible, opacity, hidden}}], highlight}.
  const perPane = Array.isArray(state?.panes) ? state.panes[paneIndex] : state?.layers;
  if (Array.isArray(perPane)) {
    const names = perPane.filter((l) => typeof l === 'string' || (l && l.visible !== false)).map((l) => (typeof l === 'string' ? l : l.name)).filter(Boolean);
    return { names, opacity: 1, hidden: {} };
  }
  if (perPane && typeof perPane === 'object') {
    const visible = Object.entries(perPane).filter(([, v]) => v === true || (v && v.visible));
    const opacities = visible.map(([, v]) => (typeof v?.opacity === 'number' ? v.opacity : 1));
    // legend entries the presenter unticked stay out of the snapshot too
    const hidden = Object.fromEntries(visible.filter(([, v]) => Array.isArray(v?.hidden) && v.hidden.length)
      .map(([k, v]) => [k, v.hidden]));
    return { names: visible.map(([k]) => k), opacity: opacities.length ? Math.max(...opacities) : 1, hidden };
  }
  return { names: [], opacity: 1, hidden: {} };
}

function paneRequest(pane, index) {
  // a pane's viewport in level-0 px of its slide, at the screen's pixel size, with its overlays
  const rect = pane.overlayRoot.getBoundingClientRect();
  const corners = [[0, 0], [rect.width, 0], [0, rect.height], [rect.width, rect.height]]
    .map(([x, y]) => pane.elementToImage({ x, y }));
  const xs = corners.map((p) => p.x); const ys = corners.map((p) => p.y);
  const x = Math.min(...xs); const y = Math.min(...ys);
  const width = Math.max(...xs) - x; const height = Math.max(...ys) - y;
  const outWidth = Math.max(16, Math.min(2048, Math.round(rect.width * (window.devicePixelRatio || 1))));
  const layers = overlayLayers(overlaysState(), index);
  return {
    slide: pane.slide.id, x, y, width, height, out_width: outWidth,
    out_height: Math.max(16, Math.min(4096, Math.round(outWidth * height / width))),
    layers: layers.names, overlay_opacity: layers.opacity, hidden: layers.hidden,
  };
}

async function snapshot() {
  const viewer = board.viewer;
  if (!viewer) { toast('No slide to snapshot.', 'error'); return; }
  // what the presenter sees: every pane on screen, left to right (H&E and IHC side by side)
  const shown = viewer.panes.map((pane, index) => ({ pane, index }))
    .filter(({ pane }) => pane.slide && pane.overlayRoot.getBoundingClientRect().width > 0);
  if (!shown.length) { toast('No slide to snapshot.', 'error'); return; }
  const [first, ...rest] = shown.map(({ pane, index }) => paneRequest(pane, index));
  const labels = shown.map(({ pane }) => pane.slide.label || '').filter(Boolean).join(' + ');
  const button = $('board-snapshot');
  button.disabled = true;
  try {
    const record = await postJson(config.snapshotsUrl, {
      ...first,
      caption: $('board-caption').value || `${config.caseLabel} · ${labels}`,
      ...(rest.length ? { panes: rest } : {}),
    });
    addRecord(record);
    toast('Snapshot saved to the board record.');
  } catch (error) {
    toast(`Snapshot failed: ${error.message}`, 'error');
  } finally {
    button.disabled = false;
  }
}

async function summary() {
  // feedback while the server writes the PDF (a few seconds), then where it went
  const button = $('board-summary');
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  button.textContent = 'Making PDF…';
  try {
    const record = await postJson(config.summariesUrl, { case: config.caseId });
    addRecord(record);
    button.textContent = 'PDF saved ✓';
    toast('Case summary (PDF) saved to the board record (listed under “Board record”).');
    setTimeout(() => { button.textContent = label; }, 2500);
  } catch (error) {
    button.textContent = label;
    toast(`Summary failed: ${error.message}`, 'error');
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

async function toggleFullScreen() {
  if (document.fullscreenElement) await document.exitFullscreen();
  else await root.requestFullscreen?.();
}

function wireControls() {
  $('board-prev').addEventListener('click', (e) => goToCase(e.currentTarget.dataset.case));
  $('board-next').addEventListener('click', (e) => goToCase(e.currentTarget.dataset.case));
  $('board-jump').addEventListener('change', (e) => goToCase(e.currentTarget.value));
  $('board-detach')?.addEventListener('click', () => setAttached(!board.attached));
  $('board-handover')?.addEventListener('click', () => {
    const to = Number($('board-handover-to').value);
    if (to) send({ type: 'handover', to });
  });
  $('board-take')?.addEventListener('click', () => send({ type: 'handover', to: board.you }));
  const endDialog = $('board-end-dialog');
  $('board-end')?.addEventListener('click', () => { endDialog.returnValue = ''; endDialog.showModal(); });
  endDialog?.addEventListener('close', () => { if (endDialog.returnValue === 'end') endBoard(); });
  $('board-snapshot')?.addEventListener('click', snapshot);
  $('board-summary')?.addEventListener('click', summary);
  $('board-fullscreen').addEventListener('click', toggleFullScreen);
  document.addEventListener('fullscreenchange', () => {
    $('board-fullscreen').setAttribute('aria-pressed', String(document.fullscreenElement === root));
  });
  for (const item of document.querySelectorAll('#board-attributions li[data-feature]')) {
    item.addEventListener('click', () => onAttributionClick(item));
    item.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onAttributionClick(item); } });
  }
  document.addEventListener('keydown', (event) => {
    const target = event.target;
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    if (target && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName))) return;
    if (event.key === 'n') goToCase($('board-next').dataset.case);
    else if (event.key === 'p') goToCase($('board-prev').dataset.case);
  });
}

// ----- start

function viewerReady() {
  if (!viewerReady.promise) {
    viewerReady.promise = new Promise((resolve) => {
      const check = () => (window.caseViewer ? resolve(window.caseViewer) : setTimeout(check, 50));
      check();
    }).then(async (viewer) => {
      await viewer.ready;
      board.viewer = viewer;
      trackPointer(viewer);
      viewer.onChange(() => scheduleSend());
      // The overlay module may change layers without moving the view: watch its state.
      setInterval(() => {
        if (!isDriver()) return;
        const json = JSON.stringify(overlaysState());
        if (json !== board.overlaysJson) { board.overlaysJson = json; scheduleSend(); }
      }, 300);
      if (!isDriver() && board.attached && board.latest) applyState(board.latest.state);
      return viewer;
    });
  }
  return viewerReady.promise;
}

wireControls();
updateRole();
if (isEnded()) setStatus('Ended', false);  // read-only: no socket, nobody to follow
else connect();
if (config.slides.length) viewerReady();
