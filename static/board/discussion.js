// Tumour board: the case's reviews and open annotations, behind a toggle; a click on an
// annotation frames it in the paired viewer. The presenter's view is what followers follow, so
// when the presenter jumps, the board jumps (board.js sends the new viewport as usual).
const config = JSON.parse(document.getElementById('board-config').textContent);
const viewerConfig = JSON.parse(document.getElementById('case-viewer-config')?.textContent || '{}');
const toggle = document.getElementById('board-discussion-toggle');
const panel = document.getElementById('board-discussion');
const DEG = Math.PI / 180;

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

function toFixed(annotation, point) {
  // the viewer's state is in H&E level-0 px: an IHC annotation goes back through the alignment
  const a = viewerConfig.alignment;
  if (annotation.stain !== 'ihc' || !a) return point;
  const c = Math.cos(a.rotation * DEG); const s = Math.sin(a.rotation * DEG);
  const dx = (point.x - a.offset_x) / a.scale; const dy = (point.y - a.offset_y) / a.scale;
  return { x: c * dx + s * dy, y: -s * dx + c * dy };
}

export function jumpTo(annotationId) {
  const annotation = (config.annotations || []).find((a) => a.id === Number(annotationId));
  const viewer = window.caseBoard?.viewer || window.caseViewer;
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
  document.querySelectorAll('.board-annotation[aria-current]').forEach((b) => b.removeAttribute('aria-current'));
  document.querySelector(`.board-annotation[data-annotation="${annotation.id}"]`)?.setAttribute('aria-current', 'true');
  return state;
}

document.getElementById('board-annotations')?.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-annotation]');
  if (button) jumpTo(button.dataset.annotation);
});
window.boardDiscussion = { jumpTo };
