// Annotations on the case page: Annotorious 3 (global AnnotoriousOSD, UMD) on each
// OpenSeadragon viewer of window.caseViewer for polygons and rectangles, plus our own point
// and freehand tools. Geometry is kept in level-0 pixels of each slide (Annotorious works in
// image coordinates of the OSD tiled image, which is the full-resolution DZI).
//
// window.caseAnnotations = {ready, records(), reload(slideId), setTool(name, slideId), select(id, {fit}),
//                           annotator(slideId)}
const config = JSON.parse(document.getElementById('review-config').textContent);
const $ = (id) => document.getElementById(id);

const state = {
  viewer: null,
  slides: new Map(),   // slide id -> {slide, pane, anno, svg}
  records: new Map(),  // annotation id -> record (as the API returns it)
  tool: null,          // 'polygon' | 'rectangle' | 'freehand' | 'point' | null
  toolSlide: null,
  freehand: null,      // {slideId, points: [[x, y]], last: {x, y}} while dragging
  toolEndedAt: -Infinity,  // performance.now() when the last drawing tool was put down
  silent: 0,           // > 0 while we change Annotorious ourselves
  selected: null,
  expectRemoved: new Set(),  // ids we removed from Annotorious ourselves
  switchedPress: false,  // a press on the other slide that moved the drawing tool there (no pan)
};

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  try { return JSON.parse($('case-viewer-config').textContent).csrfToken || ''; } catch { return ''; }
}

async function api(url, { method = 'GET', body, formData } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRFToken'] = csrfToken();
  let payload;
  if (formData) payload = formData;
  else if (body !== undefined) { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  const response = await fetch(url, { method, headers, body: payload, credentials: 'same-origin' });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  return { ok: response.ok, status: response.status, data };
}

function errorText(reply) {
  if (!reply.data) return `HTTP ${reply.status}`;
  if (reply.data.detail && typeof reply.data.detail === 'string') return reply.data.detail;
  return Object.entries(reply.data).map(([k, v]) => `${k}: ${[].concat(v).join(' ')}`).join('; ');
}

function showError(message) {
  const box = $('an-error');
  if (!box) return;
  box.textContent = message || '';
  box.hidden = !message;
}

// How long after a tool is put down its closing double click may still arrive (browsers' default
// double-click interval is 500 ms).
const DOUBLE_CLICK_GRACE_MS = 600;

const annotationUrl = (id) => `/api/annotations/${id}/`;
const labelColor = (name) => (config.labels.find((l) => l.name === name) || { color: '#E69F00' }).color;
const escapeHtml = (text) => String(text ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

// ----- geometry <-> Annotorious shapes -----------------------------------------------------

function boundsOf(points) {
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  return { minX: Math.min(...xs), minY: Math.min(...ys), maxX: Math.max(...xs), maxY: Math.max(...ys) };
}

function toShape(record) {
  const geometry = record.geometry;
  if (!geometry || geometry.type !== 'Polygon') return null;
  const ring = geometry.coordinates[0].slice(0, -1);
  const bounds = boundsOf(ring);
  const axisAligned = ring.length === 4 && ring.every((p) => (p[0] === bounds.minX || p[0] === bounds.maxX)
    && (p[1] === bounds.minY || p[1] === bounds.maxY));
  if (record.shape === 'rectangle' && axisAligned) {
    return { type: 'RECTANGLE', geometry: { x: bounds.minX, y: bounds.minY, w: bounds.maxX - bounds.minX, h: bounds.maxY - bounds.minY, bounds } };
  }
  return { type: 'POLYGON', geometry: { points: ring, bounds } };
}

function toAnnotorious(record) {
  const id = String(record.id);
  return { id, bodies: [], target: { annotation: id, selector: toShape(record) } };
}

function shapeToGeometry(selector) {
  let ring;
  if (selector.type === 'RECTANGLE') {
    const { x, y, w, h } = selector.geometry;
    ring = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]];
  } else if (selector.type === 'POLYGON') {
    ring = [];
    for (const p of selector.geometry.points) {
      const last = ring[ring.length - 1];
      if (!last || Math.abs(last[0] - p[0]) > 1e-6 || Math.abs(last[1] - p[1]) > 1e-6) ring.push([p[0], p[1]]);
    }
  } else {
    throw new Error(`shape ${selector.type} is not supported`);
  }
  ring = ring.map(([x, y]) => [Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
  ring.push([...ring[0]]);
  return { type: 'Polygon', coordinates: [ring] };
}

/** Remove from Annotorious without raising its deleteAnnotation event (origin REMOTE). */
function removeQuietly(anno, id) {
  if (anno.state?.store) {
    anno.state.store.deleteAnnotation(String(id), 'REMOTE');
  } else {
    state.expectRemoved.add(String(id));
    silently(() => anno.removeAnnotation(String(id)));
  }
}

function silently(fn) {
  state.silent += 1;
  try { return fn(); } finally { state.silent -= 1; }
}

// ----- records -------------------------------------------------------------------------------

function upsert(record) {
  const entry = state.slides.get(record.slide);
  const known = state.records.has(record.id);
  if (record.deleted) {
    state.records.delete(record.id);
    if (entry && known && record.shape !== 'point') removeQuietly(entry.anno, record.id);
  } else {
    state.records.set(record.id, record);
    if (entry && record.shape !== 'point') {
      silently(() => {
        if (entry.anno.getAnnotationById(String(record.id))) removeQuietly(entry.anno, record.id);
        entry.anno.addAnnotation(toAnnotorious(record));
      });
    }
  }
  if (entry) { entry.anno.setStyle(styleFor); drawPoints(entry); }
  renderList();
}

async function reload(slideId) {
  const entry = state.slides.get(slideId);
  const reply = await api(entry.slide.annotationsUrl);
  if (!reply.ok) { showError(`Annotations of the ${entry.slide.label} did not load: ${errorText(reply)}`); return; }
  for (const [id, record] of [...state.records]) if (record.slide === slideId) state.records.delete(id);
  for (const record of reply.data) state.records.set(record.id, record);
  silently(() => entry.anno.setAnnotations(reply.data.filter((r) => r.shape !== 'point' && toShape(r)).map(toAnnotorious), true));
  drawPoints(entry);
  renderList();
}

async function createRecord(slideId, geometry, shape, tempId) {
  const entry = state.slides.get(slideId);
  const label = $('an-label').value;
  const comment = $('an-comment').value;
  const reply = await api(entry.slide.annotationsUrl, {
    method: 'POST',
    body: { type: 'Feature', geometry, properties: { label, comment, shape, source: 'drawn' } },
  });
  if (tempId) removeQuietly(entry.anno, tempId);
  if (reply.status !== 201) { showError(`Not saved: ${errorText(reply)}`); return null; }
  showError('');
  $('an-comment').value = '';
  upsert(reply.data);
  select(reply.data.id);
  document.dispatchEvent(new CustomEvent('annotation:created', { detail: reply.data }));
  return reply.data;
}

async function patchRecord(record, body) {
  const reply = await api(annotationUrl(record.id), { method: 'PATCH', body: { ...body, version: record.version } });
  if (!reply.ok) {
    showError(`Not saved: ${errorText(reply)}`);
    await reload(record.slide);
    return null;
  }
  showError('');
  upsert(reply.data);
  return reply.data;
}

async function deleteRecord(record) {
  const reply = await api(annotationUrl(record.id), { method: 'DELETE', body: { version: record.version } });
  if (reply.status !== 204) { showError(`Not deleted: ${errorText(reply)}`); await reload(record.slide); return; }
  showError('');
  upsert({ ...record, deleted: true });
  if (state.selected === record.id) showDetails(null);
}

// ----- drawing tools -----------------------------------------------------------------------

function setTool(tool, slideId) {
  if (tool && !config.canAnnotate) return;
  const slideSelect = $('an-slide');
  if (slideId !== undefined && slideSelect) slideSelect.value = String(slideId);
  const target = slideSelect ? Number(slideSelect.value) : null;
  const wasDrawing = Boolean(state.tool);
  state.tool = tool && !(tool === state.tool && target === state.toolSlide && slideId === undefined) ? tool : null;
  state.toolSlide = state.tool ? target : null;
  if (wasDrawing && !state.tool) state.toolEndedAt = performance.now();
  state.freehand = null;
  for (const [id, entry] of state.slides) {
    const annotorious = state.tool && id === state.toolSlide && (state.tool === 'polygon' || state.tool === 'rectangle');
    if (annotorious) {
      // Annotorious' desktop default is 'click' mode (click a corner, click the other), where a
      // drag pans the slide; a rectangle is dragged (as in QuPath), a polygon clicked vertex by vertex.
      entry.anno.setDrawingMode(state.tool === 'rectangle' ? 'drag' : 'click');
      entry.anno.setDrawingTool(state.tool);
    }
    entry.anno.setDrawingEnabled(Boolean(annotorious));
    entry.pane.root?.classList?.toggle('an-drawing', Boolean(state.tool) && id === state.toolSlide);
    drawPoints(entry);
  }
  document.querySelectorAll('.an-buttons button[data-tool]').forEach((button) => {
    button.setAttribute('aria-pressed', String(button.dataset.tool === state.tool));
  });
  const hints = {
    polygon: 'Click the vertices; double-click to close the polygon.',
    rectangle: 'Drag a rectangle.',
    freehand: 'Drag to draw an outline; release to close it.',
    point: 'Click a point.',
  };
  const hint = $('an-hint');
  if (hint) hint.textContent = state.tool ? `${hints[state.tool]} Esc cancels.` : 'Choose a tool, then draw on the slide (Esc cancels).';
}

function styleFor(annotation) {
  const record = state.records.get(Number(annotation.id));
  const color = record ? record.color : labelColor($('an-label')?.value);
  const selected = record && record.id === state.selected;
  return { fill: color, fillOpacity: selected ? 0.3 : 0.12, stroke: color, strokeOpacity: 1, strokeWidth: selected ? 3 : 2 };
}

function attachTools(entry) {
  const { viewer } = entry.pane;
  const slideId = entry.slide.id;
  const active = (tool) => state.tool === tool && state.toolSlide === slideId;
  // A double click closes a polygon (and ends a point or a shape); OpenSeadragon would also zoom
  // 2x on it. No zoom while a drawing tool is active, nor for the double click that just put
  // it down (Annotorious may close the polygon before this handler runs, whatever the order).
  viewer.addHandler('canvas-double-click', (event) => {
    if (state.tool || performance.now() - state.toolEndedAt < DOUBLE_CLICK_GRACE_MS) event.preventDefaultAction = true;
  }, null, Number.MAX_SAFE_INTEGER);
  viewer.addHandler('canvas-click', (event) => {
    if (!active('point') || !event.quick) return;
    event.preventDefaultAction = true;
    const p = entry.pane.elementToImage(event.position);
    setTool(null);
    createRecord(slideId, { type: 'Point', coordinates: [Math.round(p.x * 1000) / 1000, Math.round(p.y * 1000) / 1000] }, 'point');
  });
  viewer.addHandler('canvas-press', (event) => {
    if (state.tool && state.toolSlide !== slideId && config.canAnnotate) {
      // Drawing on the other slide of the pair: the tool follows (it used to pan there silently).
      // This press only switches (the shape tools start on the next one), so it must not pan.
      setTool(state.tool, slideId);
      state.switchedPress = !active('freehand') && !active('point');
      const hint = $('an-hint');
      const name = $('an-slide')?.selectedOptions?.[0]?.textContent || 'this slide';
      if (hint && state.switchedPress) hint.textContent = `Now drawing on ${name}: ${hint.textContent}`;
    }
    if (!active('freehand')) return;
    const p = entry.pane.elementToImage(event.position);
    state.freehand = { slideId, points: [[p.x, p.y]], last: event.position };
  });
  viewer.addHandler('canvas-drag', (event) => {
    if (state.switchedPress) { event.preventDefaultAction = true; return; }
    if (!active('freehand') || !state.freehand) return;
    event.preventDefaultAction = true;
    const { last } = state.freehand;
    if (Math.hypot(event.position.x - last.x, event.position.y - last.y) < 3) return;
    const p = entry.pane.elementToImage(event.position);
    state.freehand.points.push([p.x, p.y]);
    state.freehand.last = event.position;
    drawPoints(entry);
  });
  viewer.addHandler('canvas-release', () => {
    state.switchedPress = false;
    if (!active('freehand') || !state.freehand) return;
    const { points } = state.freehand;
    state.freehand = null;
    if (points.length < 3) { drawPoints(entry); return; }
    setTool(null);
    const ring = points.map(([x, y]) => [Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
    ring.push([...ring[0]]);
    createRecord(slideId, { type: 'Polygon', coordinates: [ring] }, 'freehand');
  });
  viewer.addHandler('update-viewport', () => drawPoints(entry));

  const anno = entry.anno;
  anno.on('createAnnotation', (annotation) => {
    if (state.silent) return;
    const tool = state.tool;
    setTool(null);
    let geometry;
    try { geometry = shapeToGeometry(annotation.target.selector); } catch (error) {
      removeQuietly(anno, annotation.id);
      showError(String(error.message || error));
      return;
    }
    const shape = annotation.target.selector.type === 'RECTANGLE' ? 'rectangle' : (tool === 'freehand' ? 'freehand' : 'polygon');
    createRecord(slideId, geometry, shape, annotation.id);
  });
  anno.on('updateAnnotation', (annotation) => {
    if (state.silent) return;
    const record = state.records.get(Number(annotation.id));
    if (!record || !record.can_edit) return;
    const geometry = shapeToGeometry(annotation.target.selector);
    if (JSON.stringify(geometry) === JSON.stringify(record.geometry)) return;  // our own refresh
    patchRecord(record, { geometry });
  });
  anno.on('deleteAnnotation', (annotation) => {
    if (state.expectRemoved.delete(String(annotation.id)) || state.silent) return;
    const record = state.records.get(Number(annotation.id));
    if (record) deleteRecord(record);
  });
  anno.on('selectionChanged', (selected) => {
    if (state.silent) return;
    // Only a new selection re-renders the details (re-styling can raise this event again).
    if (selected.length && Number(selected[0].id) !== state.selected) {
      showDetails(state.records.get(Number(selected[0].id)) || null);
    }
  });
}

const SVG_NS = 'http://www.w3.org/2000/svg';

function drawPoints(entry) {
  const svg = entry.svg;
  if (!svg) return;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  for (const record of state.records.values()) {
    if (record.slide !== entry.slide.id || record.shape !== 'point') continue;
    const [x, y] = record.geometry.coordinates;
    const p = entry.pane.imageToElement({ x, y });
    const circle = document.createElementNS(SVG_NS, 'circle');
    circle.setAttribute('cx', p.x);
    circle.setAttribute('cy', p.y);
    circle.setAttribute('r', record.id === state.selected ? 8 : 6);
    circle.setAttribute('fill', record.color);
    circle.setAttribute('fill-opacity', '0.5');
    circle.setAttribute('stroke', record.color);
    circle.setAttribute('stroke-width', '2');
    circle.dataset.annotation = record.id;
    svg.appendChild(circle);
  }
  if (state.freehand && state.freehand.slideId === entry.slide.id) {
    const line = document.createElementNS(SVG_NS, 'polyline');
    line.setAttribute('points', state.freehand.points.map(([x, y]) => {
      const p = entry.pane.imageToElement({ x, y });
      return `${p.x},${p.y}`;
    }).join(' '));
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', labelColor($('an-label')?.value));
    line.setAttribute('stroke-width', '2');
    svg.appendChild(line);
  }
}

// ----- side panel: list, details, history --------------------------------------------------

function renderList() {
  const list = $('an-list');
  if (!list) return;
  const records = [...state.records.values()].sort((a, b) => a.id - b.id);
  list.innerHTML = records.length ? '' : '<li class="muted small">No annotations yet.</li>';
  for (const record of records) {
    const entry = state.slides.get(record.slide);
    const li = document.createElement('li');
    li.dataset.annotation = record.id;
    li.className = record.id === state.selected ? 'selected' : '';
    li.innerHTML = `<button type="button" class="linkbutton an-item"><span class="an-swatch" style="background:${escapeHtml(record.color)}"></span>`
      + `<span class="an-label">${escapeHtml(record.label)}</span>${record.source === 'transferred' ? ' <span class="an-badge an-transferred" title="Copied from the paired slide through the registration">transferred</span>' : ''} <span class="muted small">${escapeHtml(record.shape)} · ${escapeHtml(entry ? entry.slide.label : '')} · ${escapeHtml(record.author || '?')}</span></button>`;
    li.querySelector('button').addEventListener('click', () => select(record.id, { fit: true }));
    list.appendChild(li);
  }
}

function select(id, { fit = false } = {}) {
  const record = state.records.get(id);
  if (!record) return;
  const entry = state.slides.get(record.slide);
  if (record.shape === 'point') {
    if (fit) {
      const item = entry.pane.viewer.world.getItemAt(0);
      entry.pane.viewer.viewport.panTo(item.imageToViewportCoordinates(...record.geometry.coordinates));
    }
  } else {
    silently(() => entry.anno.setSelected(String(record.id), record.can_edit));
    if (fit) entry.anno.fitBounds(String(record.id), { padding: 40 });
  }
  showDetails(record);
}

function showDetails(record) {
  const box = $('an-selected');
  if (!box) return;
  state.selected = record ? record.id : null;
  for (const entry of state.slides.values()) { entry.anno.setStyle(styleFor); drawPoints(entry); }
  renderList();
  if (!record) { box.hidden = true; box.innerHTML = ''; return; }
  box.hidden = false;
  const when = new Date(record.updated_at).toLocaleString();
  const labelOptions = config.labels.map((l) => `<option ${l.name === record.label ? 'selected' : ''}>${escapeHtml(l.name)}</option>`).join('')
    + (config.labels.some((l) => l.name === record.label) ? '' : `<option selected>${escapeHtml(record.label)}</option>`);
  box.dataset.annotation = record.id;
  box.innerHTML = `<h3>${escapeHtml(record.shape)} #${record.id} <span class="muted small">by ${escapeHtml(record.author || '?')} · v${record.version} · ${escapeHtml(when)}</span></h3>`
    + (record.can_edit
      ? `<label>Label <select class="an-edit-label">${labelOptions}</select></label>
         <label>Comment <textarea class="an-edit-comment" rows="2" maxlength="5000">${escapeHtml(record.comment)}</textarea></label>
         <div class="an-row"><button type="button" class="an-save">Save</button> <button type="button" class="an-delete">Delete</button> <button type="button" class="an-history">History</button></div>`
      : `<p><strong>${escapeHtml(record.label)}</strong>${record.comment ? `: ${escapeHtml(record.comment)}` : ''}</p>
         <p class="muted small">Read-only: only its author (or an admin) changes it.</p>
         <div class="an-row"><button type="button" class="an-history">History</button></div>`)
    + '<div class="an-stats" aria-live="polite"></div><ol class="an-revisions" hidden></ol>';
  loadStatistics(record, box.querySelector('.an-stats'));
  box.querySelector('.an-save')?.addEventListener('click', () => patchRecord(record, {
    label: box.querySelector('.an-edit-label').value, comment: box.querySelector('.an-edit-comment').value,
  }).then((updated) => updated && select(updated.id)));
  box.querySelector('.an-delete')?.addEventListener('click', () => deleteRecord(record));
  box.querySelector('.an-history').addEventListener('click', () => showHistory(record, box.querySelector('.an-revisions')));
  // Other modules add to the details (static/review/transfer.js: carry across the slide pair).
  document.dispatchEvent(new CustomEvent('annotations:details', { detail: { record, box } }));
}

/** The region's numbers (GET .../statistics/): area, cells by class, HER2 of tumour cells, ASCO/CAP, H-score. */
async function loadStatistics(record, target) {
  if (!target) return;
  if (record.shape === 'point') {  // a point marks a place: no area, no cells inside to count
    target.innerHTML = '<h4>Region statistics</h4><p class="small">Area: <span data-stat="area">— (a point has no area)</span></p>';
    return;
  }
  target.textContent = 'Counting cells…';
  const reply = await api(`${annotationUrl(record.id)}statistics/`);
  if (!target.isConnected || target.closest('[data-annotation]')?.dataset.annotation !== String(record.id)) return;
  if (!reply.ok) { target.textContent = `No statistics: ${errorText(reply)}`; return; }
  const s = reply.data;
  const num = (n) => Number(n).toLocaleString('en-GB');
  const words = (key) => key.replace(/_/g, ' ');
  const rows = (counts) => Object.entries(counts).filter(([, n]) => n > 0)
    .map(([key, n]) => `<tr data-key="${escapeHtml(key)}"><th scope="row">${escapeHtml(words(key))}</th><td>${num(n)}</td></tr>`).join('');
  const area = s.area_mm2 === null ? 'unknown (no µm/px)'
    : `${s.area_mm2 < 0.01 ? s.area_mm2.toPrecision(2) : s.area_mm2.toFixed(3)} mm²`;
  let html = `<h4>Region statistics</h4><p class="small">Area: <span data-stat="area">${escapeHtml(area)}</span>`;
  if (s.run === null) html += ' · no cell analysis of this slide yet</p>';
  else {
    html += ` · <span data-stat="cells">${num(s.n_cells)}</span> cells</p>`
      + `<table class="an-stats-table small"><caption>Cells by class</caption>${rows(s.cells) || '<tr><td>none</td></tr>'}</table>`;
    if (s.stain === 'ihc') {
      html += `<table class="an-stats-table small"><caption>HER2, tumour cells</caption>${rows(s.her2) || '<tr><td>none graded</td></tr>'}</table>`
        + `<p class="small">ASCO/CAP <strong data-stat="asco">${s.asco_cap === null ? 'n/a (under 20 graded tumour cells)' : escapeHtml(s.asco_cap)}</strong>`
        + ` · H-score <strong data-stat="hscore">${s.h_score === null ? 'n/a' : Math.round(s.h_score)}</strong></p>`;
    }
  }
  target.innerHTML = html;
}

async function showHistory(record, list) {
  const reply = await api(`${annotationUrl(record.id)}history/`);
  if (!reply.ok) { showError(errorText(reply)); return; }
  list.hidden = false;
  list.innerHTML = '';
  for (const revision of reply.data.revisions) {
    const li = document.createElement('li');
    li.dataset.revision = revision.revision;
    li.innerHTML = `<span class="small">${escapeHtml(revision.action)} by ${escapeHtml(revision.user || '?')}, ${escapeHtml(new Date(revision.at).toLocaleString())}: `
      + `${escapeHtml(revision.label)}${revision.comment ? ` "${escapeHtml(revision.comment)}"` : ''}${revision.deleted ? ' (deleted)' : ''}</span>`;
    if (record.can_edit && revision.revision !== reply.data.revisions.length) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'small an-revert';
      button.textContent = 'Revert to this';
      button.addEventListener('click', async () => {
        const result = await api(`${annotationUrl(record.id)}revert/`, { method: 'POST', body: { revision: revision.revision } });
        if (!result.ok) { showError(`Not reverted: ${errorText(result)}`); return; }
        showError('');
        upsert(result.data);
        select(result.data.id);
      });
      li.append(' ', button);
    }
    list.appendChild(li);
  }
}

function attachPanel() {
  document.querySelectorAll('.an-buttons button[data-tool]').forEach((button) => {
    button.addEventListener('click', () => setTool(button.dataset.tool));
  });
  $('an-slide')?.addEventListener('change', () => state.tool && setTool(state.tool, Number($('an-slide').value)));
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && state.tool) {
      for (const entry of state.slides.values()) entry.anno.cancelDrawing?.();
      setTool(null);
    }
  });
  document.querySelectorAll('form.an-import').forEach((form) => form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const status = $('an-import-status');
    const reply = await api(form.dataset.url, { method: 'POST', formData: new FormData(form) });
    const created = reply.data?.created?.length || 0;
    const errors = (reply.data?.errors || []).map((e) => `feature ${e.feature}: ${e.error}`);
    status.textContent = reply.data?.created ? `Imported ${created} annotation(s).${errors.length ? ` Skipped: ${errors.join('; ')}` : ''}`
      : `Import failed: ${errorText(reply)}`;
    status.classList.toggle('error', !created);
    const slideId = Number(form.dataset.url.match(/slides\/(\d+)\//)[1]);
    if (state.slides.has(slideId)) await reload(slideId);
  }));
}

// ----- start -----------------------------------------------------------------------------------

function viewerReady() {
  return new Promise((resolve) => {
    if (window.caseViewer) resolve(window.caseViewer);
    else document.addEventListener('caseviewer:ready', (event) => resolve(event.detail), { once: true });
  }).then((viewer) => viewer.ready.then(() => viewer));
}

async function start() {
  if (!$('case-viewer')) return window.caseAnnotations;
  if (typeof window.AnnotoriousOSD === 'undefined') {
    showError('Annotorious did not load (static/vendor/annotorious-openseadragon missing).');
    return window.caseAnnotations;
  }
  const viewer = await viewerReady();
  state.viewer = viewer;
  for (const slide of config.slides) {
    const pane = viewer.panes.find((p) => p.slide && Number(p.slide.id) === slide.id);
    if (!pane || !pane.viewer.world.getItemCount()) continue;
    // Annotorious converts through viewport.viewportToImageCoordinates; with cell-overlay tiles
    // (same bounds as the slide) in the world that is still exact, but OSD would log an error.
    pane.viewer.viewport.silenceMultiImageWarnings = true;
    const anno = window.AnnotoriousOSD.createOSDAnnotator(pane.viewer, {
      drawingEnabled: false,
      userSelectAction: (annotation) => (state.records.get(Number(annotation.id))?.can_edit ? 'EDIT' : 'SELECT'),
      style: styleFor,
    });
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'an-points');
    pane.overlayRoot.appendChild(svg);
    const entry = { slide, pane, anno, svg };
    state.slides.set(slide.id, entry);
    attachTools(entry);
  }
  attachPanel();
  await Promise.all([...state.slides.keys()].map(reload));
  return window.caseAnnotations;
}

window.caseAnnotations = {
  records: () => [...state.records.values()],
  reload: (slideId) => reload(slideId),
  setTool: (tool, slideId) => setTool(tool, slideId),
  select: (id, { fit = true } = {}) => select(id, { fit }),
  annotator: (slideId) => state.slides.get(slideId)?.anno,
};
window.caseAnnotations.ready = start().catch((error) => { showError(`Annotations: ${error.message || error}`); throw error; });
