// Annotations carried across the slide pair (issue 17): in the selected annotation's details,
// "Show on <other slide>" draws where it lies on the paired slide (dashed, nothing saved) and
// "Copy to <other slide>" makes it an annotation of that slide, marked transferred. Both go
// through the server (POST /api/annotations/<id>/transfer/), which maps through the case's
// registration: the similarity, and the non-rigid field while the automatic registration applies.
// A transferred annotation shows a badge and where it came from.

const SVG_NS = 'http://www.w3.org/2000/svg';
const state = { preview: null }; // {pane, svg, geometry, redraw}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : '';
}

async function post(url, body) {
  const response = await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { Accept: 'application/json', 'Content-Type': 'application/json', 'X-CSRFToken': csrfToken() },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => null);
  return { ok: response.ok, status: response.status, data };
}

function message(reply) {
  const data = reply.data;
  if (!data) return `HTTP ${reply.status}`;
  if (typeof data.detail === 'string') return data.detail;
  return Object.entries(data).map(([k, v]) => `${k}: ${[].concat(v).join(' ')}`).join('; ');
}

function paneOf(slideId) {
  return window.caseViewer?.panes.find((pane) => pane.slide && Number(pane.slide.id) === Number(slideId)) || null;
}

function otherPane(slideId) {
  return window.caseViewer?.panes.find((pane) => pane.slide && Number(pane.slide.id) !== Number(slideId)) || null;
}

function clearPreview() {
  if (!state.preview) return;
  state.preview.pane.viewer.removeHandler('update-viewport', state.preview.redraw);
  state.preview.svg.remove();
  state.preview = null;
}

function drawPreview(pane, geometry) {
  clearPreview();
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', 'an-transfer-preview');
  svg.setAttribute('aria-hidden', 'true');
  svg.style.cssText = 'position:absolute;inset:0;width:100%;height:100%;overflow:visible;pointer-events:none';
  pane.overlayRoot.appendChild(svg);
  const redraw = () => {
    svg.replaceChildren();
    if (geometry.type === 'Point') {
      const at = pane.imageToElement({ x: geometry.coordinates[0], y: geometry.coordinates[1] });
      const circle = document.createElementNS(SVG_NS, 'circle');
      Object.entries({ cx: at.x, cy: at.y, r: 9, fill: 'none', stroke: '#56B4E9', 'stroke-width': 3, 'stroke-dasharray': '4 3' })
        .forEach(([k, v]) => circle.setAttribute(k, v));
      svg.appendChild(circle);
      return;
    }
    for (const ring of geometry.coordinates) {
      const points = ring.map(([x, y]) => pane.imageToElement({ x, y })).map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
      const polygon = document.createElementNS(SVG_NS, 'polygon');
      Object.entries({ points, fill: 'rgba(86,180,233,0.12)', stroke: '#56B4E9', 'stroke-width': 3, 'stroke-dasharray': '8 5' })
        .forEach(([k, v]) => polygon.setAttribute(k, v));
      svg.appendChild(polygon);
    }
  };
  pane.viewer.addHandler('update-viewport', redraw);
  redraw();
  state.preview = { pane, svg, geometry, redraw };
}

function button(text, className, title) {
  const node = document.createElement('button');
  node.type = 'button';
  node.className = className;
  node.textContent = text;
  node.title = title;
  return node;
}

document.addEventListener('annotations:details', (event) => {
  const { record, box } = event.detail;
  clearPreview();
  const other = otherPane(record.slide);
  const source = paneOf(record.slide);
  if (record.source === 'transferred' && record.transferred_from) {
    const how = record.transfer ? (record.transfer.nonrigid ? 'automatic registration, non-rigid' : `${record.transfer.alignment} alignment`) : 'registration';
    const note = document.createElement('p');
    note.className = 'small an-transfer-note';
    note.innerHTML = '<span class="an-badge an-transferred">transferred</span> ';
    note.append(`from ${record.transfer?.from_stain === 'he' ? 'H&E' : record.transfer?.from_stain === 'ihc' ? 'HER2 IHC' : 'the paired slide'} annotation #${record.transferred_from} through the ${how}. Region statistics come from this slide's own cells.`);
    box.querySelector('h3')?.after(note);
  }
  if (!other || !source || record.deleted) return;
  const name = other.slide.label || other.slide.stain;
  const row = document.createElement('div');
  row.className = 'an-row an-transfer-row';
  const show = button(`Show on ${name}`, 'an-transfer-show', `Outline where this lies on the ${name} slide, through the registration (not saved)`);
  show.setAttribute('aria-pressed', 'false');
  const copy = button(`Copy to ${name}`, 'an-transfer-copy', `Copy this annotation onto the ${name} slide through the registration, marked transferred`);
  const status = document.createElement('span');
  status.className = 'small an-transfer-status';
  status.setAttribute('role', 'status');
  row.append(show, copy, status);
  const history = box.querySelector('.an-revisions');
  box.insertBefore(row, history);

  show.addEventListener('click', async () => {
    if (show.getAttribute('aria-pressed') === 'true') {
      clearPreview();
      show.setAttribute('aria-pressed', 'false');
      return;
    }
    const reply = await post(`/api/annotations/${record.id}/transfer/`, { preview: true });
    if (!reply.ok) { status.textContent = `Not shown: ${message(reply)}`; return; }
    drawPreview(paneOf(reply.data.slide) || other, reply.data.geometry);
    show.setAttribute('aria-pressed', 'true');
    status.textContent = reply.data.transfer.nonrigid ? 'through the non-rigid registration' : `through the ${reply.data.transfer.alignment} alignment (similarity)`;
  });
  copy.addEventListener('click', async () => {
    const reply = await post(`/api/annotations/${record.id}/transfer/`);
    if (reply.status === 409 && reply.data?.annotation) {
      status.textContent = message(reply);
      return;
    }
    if (!reply.ok) { status.textContent = `Not copied: ${message(reply)}`; return; }
    clearPreview();
    await window.caseAnnotations.reload(reply.data.slide);
    window.caseAnnotations.select(reply.data.id, { fit: false });
  });
});
