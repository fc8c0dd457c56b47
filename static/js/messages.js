// Flash messages stack at the top right, below the header, and never cover what the user reads.
// On the case page (and any page whose side panel stands beside a slide viewer) they are the side
// panel's first item, in its flow: the clinical summary moves down for them instead of lying
// under them, and the viewer keeps its full height. Elsewhere they float (static/css/app.css)
// clear of the page's headings, moving down past any heading they would cover.
// Confirmations go by themselves after AUTO_DISMISS_MS (not while the pointer or the focus is on
// them), collapsing smoothly so the text below does not jump; a click on one closes it at once.
// Errors and warnings stay until closed (×). A message about a job (class "job-<id>") is removed
// by static/js/jobs.js when that job ends.
const AUTO_DISMISS_MS = 8000;
const COLLAPSE_MS = 200;
const GAP_PX = 8;
const KEEP_CLEAR = 'main h1, main h2, main h3, .pagehead, #case-viewer';
const box = document.querySelector('.messages');
const home = box && { parent: box.parentNode, next: box.nextSibling };

function overlaps(a, b) {
  return a.width > 0 && a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
}

/** The side panel when it stands beside the viewer (not stacked under it on a narrow screen). */
function sidePanelBesideViewer() {
  const side = document.querySelector('.casepage .sidepanel');
  return side && side.getBoundingClientRect().left > 0 ? side : null;
}

function placeMessages() {
  if (!box || !box.isConnected) return;
  const side = sidePanelBesideViewer();
  if (side) {
    if (box.parentNode !== side) side.prepend(box);
    box.classList.add('messages-inline');
    box.style.top = '';
    return;
  }
  if (box.classList.contains('messages-inline')) {
    box.classList.remove('messages-inline');
    home.parent.insertBefore(box, home.next && home.next.parentNode === home.parent ? home.next : null);
  }
  const header = document.querySelector('.research-banner') || document.querySelector('.topbar');
  const start = header ? header.getBoundingClientRect().bottom + GAP_PX : GAP_PX;
  let top = start;
  box.style.top = `${top}px`;
  for (let step = 0; step < 12; step += 1) {
    const rect = box.getBoundingClientRect();
    const covered = [...document.querySelectorAll(KEEP_CLEAR)].map((el) => el.getBoundingClientRect())
      .filter((r) => overlaps(r, rect));
    if (!covered.length) return;
    top = Math.max(...covered.map((r) => r.bottom)) + GAP_PX;
    box.style.top = `${top}px`;
  }
  if (box.getBoundingClientRect().bottom > window.innerHeight) box.style.top = `${start}px`;  // nowhere clear: stay in sight
}

function remove(item) {
  item.remove();
  if (box && !box.children.length) box.remove();
}

function close(item, { smooth = false } = {}) {
  const still = window.matchMedia?.('(prefers-reduced-motion: reduce)').matches;
  if (!smooth || still || !box.classList.contains('messages-inline')) { remove(item); return; }
  // in the side panel's flow: fold away, so what is below moves up gently rather than jumping
  item.style.height = `${item.getBoundingClientRect().height}px`;
  item.classList.add('message-closing');
  requestAnimationFrame(() => { item.style.height = '0px'; });
  setTimeout(() => remove(item), COLLAPSE_MS);
}

function autoDismiss(item) {
  if (item.classList.contains('error') || item.classList.contains('warning')) return;
  let timer = setTimeout(() => close(item, { smooth: true }), AUTO_DISMISS_MS);
  const hold = () => { clearTimeout(timer); timer = 0; };
  const release = () => {
    if (!timer && !item.matches(':hover') && !item.contains(document.activeElement)) {
      timer = setTimeout(() => close(item, { smooth: true }), AUTO_DISMISS_MS / 2);
    }
  };
  item.addEventListener('pointerenter', hold);
  item.addEventListener('focusin', hold);
  item.addEventListener('pointerleave', release);
  item.addEventListener('focusout', release);
  // a confirmation read is done with: a click anywhere on it closes it (not a link inside it)
  item.addEventListener('click', (event) => { if (!event.target.closest('a')) close(item); });
  item.classList.add('message-dismissable');
  item.title = 'Click to close';
}

if (box) {
  for (const item of box.querySelectorAll('.message')) {
    item.querySelector('.message-close')?.addEventListener('click', (event) => { event.stopPropagation(); close(item); });
    autoDismiss(item);
  }
  placeMessages();
  window.addEventListener('resize', placeMessages);
  // the case page lays out its viewer after this script: place again when it has
  document.addEventListener('caseviewer:ready', () => requestAnimationFrame(placeMessages));
  window.addEventListener('load', placeMessages);
}
