// Tumour board: the case's reviews and open annotations, behind a toggle; a click on an
// annotation frames it in the paired viewer and outlines it on its slide, in its label's colour.
// The presenter's view is what followers follow, so when the presenter jumps, the board jumps
// (board.js sends the new viewport, and the outlined annotation, as usual).
const config = JSON.parse(document.getElementById('board-config').textContent);
const viewerConfig = JSON.parse(document.getElementById('case-viewer-config')?.textContent || '{}');
const toggle = document.getElementById('board-discussion-toggle');
const panel = document.getElementById('board-discussion');
const clearButton = document.getElementById('board-annotation-clear');
const DEG = Math.PI / 180;
const SVG_NS = 'http://www.w3.org/2000/svg';
const POINT_RADIUS_PX = 9;

if (toggle && panel) {
  const shown = toggle.textContent.replace(/^Show/, 'Hide');
  const hidden = toggle.textContent;
  toggle.addEventListener('click', () => {
    const open = panel.hidden;
    panel.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    toggle.textContent = open ? shown : hidden;
  });
}

const findAnnotation = (annotationId) => (config.annotations || []).find((a) => a.id === Number(annotationId));
const currentViewer = () => window.caseBoard?.viewer || window.caseViewer;

function toFixed(annotation, point) {
  // the viewer's state is in H&E level-0 px: an IHC annotation goes back through the alignment
  const a = viewerConfig.alignment;
  if (annotation.stain !== 'ihc' || !a) return point;
  const c = Math.cos(a.rotation * DEG); const s = Math.sin(a.rotation * DEG);
  const dx = (point.x - a.offset_x) / a.scale; const dy = (point.y - a.offset_y) / a.scale;
  return { x: c * dx + s * dy, y: -s * dx + c * dy };
}

// ----- the outline, drawn on the pane of the annotation's own slide (its level-0 px)

let outlined = null;             // the annotation shown, or null
const layers = new Map();        // pane -> its <svg>

function rings(geometry) {
  if (geometry?.type === 'Polygon') return geometry.coordinates || [];
  if (geometry?.type === 'MultiPolygon') return (geometry.coordinates || []).flat();
  return [];
}

function svg(tag, attrs) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  return element;
}

function layerFor(pane) {
  let layer = layers.get(pane);
  if (!layer) {
    layer = svg('svg', { class: 'board-outline-layer', 'aria-hidden': 'true' });
    pane.overlayRoot.append(layer);
    layers.set(pane, layer);
    pane.viewer.addHandler('update-viewport', () => renderPane(pane));  // follows pans and zooms
  }
  return layer;
}

function renderPane(pane) {
  const layer = layerFor(pane);
  layer.replaceChildren();
  const annotation = outlined;
  if (!annotation || !pane.opened || pane.slide?.id !== annotation.slide) return;
  layer.dataset.annotation = String(annotation.id);
  const colour = annotation.color || '#F0E442';
  const geometry = annotation.geometry;
  if (geometry?.type === 'Point') {
    const at = pane.imageToElement({ x: geometry.coordinates[0], y: geometry.coordinates[1] });
    layer.append(svg('circle', { cx: at.x, cy: at.y, r: POINT_RADIUS_PX, class: 'board-outline-halo' }),
      svg('circle', { cx: at.x, cy: at.y, r: POINT_RADIUS_PX, class: 'board-outline', stroke: colour, fill: colour }));
    return;
  }
  const d = rings(geometry).map((ring) => ring.map(([x, y], i) => {
    const at = pane.imageToElement({ x, y });
    return `${i ? 'L' : 'M'}${at.x.toFixed(1)},${at.y.toFixed(1)}`;
  }).join('') + 'Z').join('');
  if (!d) return;
  // a dark halo under the label colour: visible on pale H&E and on brown DAB alike
  layer.append(svg('path', { d, class: 'board-outline-halo', 'fill-rule': 'evenodd' }),
    svg('path', { d, class: 'board-outline', stroke: colour, fill: colour, 'fill-rule': 'evenodd' }));
}

/** Outline an annotation (by id) on its slide, or none (null); marks it in the list. */
export function outline(annotationId) {
  outlined = annotationId == null ? null : findAnnotation(annotationId) || null;
  document.querySelectorAll('.board-annotation[aria-current]').forEach((b) => b.removeAttribute('aria-current'));
  document.querySelectorAll('.board-annotation-card.current').forEach((c) => c.classList.remove('current'));
  if (outlined) {
    document.querySelector(`.board-annotation[data-annotation="${outlined.id}"]`)?.setAttribute('aria-current', 'true');
    document.querySelector(`.board-annotation-card[data-annotation="${outlined.id}"]`)?.classList.add('current');
  }
  if (clearButton) clearButton.hidden = !outlined;
  currentViewer()?.panes?.forEach(renderPane);
  return outlined;
}

export function jumpTo(annotationId) {
  const annotation = findAnnotation(annotationId);
  const viewer = currentViewer();
  if (!annotation || !viewer) return null;
  const [x0, y0, x1, y1] = annotation.bbox;
  const corners = [[x0, y0], [x1, y0], [x0, y1], [x1, y1]].map(([x, y]) => toFixed(annotation, { x, y }));
  const xs = corners.map((p) => p.x); const ys = corners.map((p) => p.y);
  const width = Math.max(...xs) - Math.min(...xs); const height = Math.max(...ys) - Math.min(...ys);
  const pane = viewer.panes?.[0];
  const rect = pane?.overlayRoot?.getBoundingClientRect() || { width: 800, height: 600 };
  const current = viewer.getState();
  // frame the annotation with a margin; a point gets a close-up of ~400 level-0 px
  const zoom = Math.min(rect.width / Math.max(width * 1.6, 400), rect.height / Math.max(height * 1.6, 400));
  const state = { center: { x: (Math.min(...xs) + Math.max(...xs)) / 2, y: (Math.min(...ys) + Math.max(...ys)) / 2 },
    zoom, rotation: current?.rotation || 0 };
  viewer.setState(state, { animate: false });
  outline(annotation.id);
  window.caseBoard?.setAnnotation?.(annotation.id);  // the driver's outline goes to the followers
  return state;
}

document.getElementById('board-annotations')?.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-annotation]');
  if (button) jumpTo(button.dataset.annotation);
});
clearButton?.addEventListener('click', () => {
  outline(null);
  window.caseBoard?.setAnnotation?.(null);
});
window.boardDiscussion = { jumpTo, outline };
// board.js may have applied the driver's state before this module ran
if (window.caseBoard?.appliedAnnotation != null) outline(window.caseBoard.appliedAnnotation);
