// Flash messages float over the page (static/css/app.css), stacked at the top right below the
// header, and never cover a page heading or the slide viewer: on the case page the stack stays
// over the side panel, below the case's title, and anywhere it moves down past a heading it
// would cover. Confirmations go by themselves after AUTO_DISMISS_MS (not while the pointer or
// the focus is on them); errors and warnings stay until closed. A message about a job (class
// "job-<id>") is removed by static/js/jobs.js when that job ends.
const AUTO_DISMISS_MS = 8000;
const GAP_PX = 8;
const KEEP_CLEAR = 'main h1, main h2, main h3, .pagehead, #case-viewer';
const box = document.querySelector('.messages');

function overlaps(a, b) {
  return a.width > 0 && a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
}

function placeMessages() {
  if (!box || !box.isConnected) return;
  const side = document.querySelector('.casepage .sidepanel');
  const sideRect = side && side.getBoundingClientRect();
  if (sideRect && sideRect.left > 0) {  // side panel beside the viewer (not stacked under it)
    box.style.right = `${window.innerWidth - sideRect.right + GAP_PX}px`;
    box.style.maxWidth = `${sideRect.width - 2 * GAP_PX}px`;
  } else {
    box.style.right = '';
    box.style.maxWidth = '';
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

function close(item) {
  item.remove();
  if (box && !box.children.length) box.remove();
}

function autoDismiss(item) {
  if (item.classList.contains('error') || item.classList.contains('warning')) return;
  let timer = setTimeout(() => close(item), AUTO_DISMISS_MS);
  const hold = () => { clearTimeout(timer); timer = 0; };
  const release = () => {
    if (!timer && !item.matches(':hover') && !item.contains(document.activeElement)) {
      timer = setTimeout(() => close(item), AUTO_DISMISS_MS / 2);
    }
  };
  item.addEventListener('pointerenter', hold);
  item.addEventListener('focusin', hold);
  item.addEventListener('pointerleave', release);
  item.addEventListener('focusout', release);
}

if (box) {
  for (const item of box.querySelectorAll('.message')) {
    item.querySelector('.message-close')?.addEventListener('click', () => close(item));
    autoDismiss(item);
  }
  placeMessages();
  window.addEventListener('resize', placeMessages);
  // the case page lays out its viewer after this script: place again when it has
  document.addEventListener('caseviewer:ready', () => requestAnimationFrame(placeMessages));
  window.addEventListener('load', placeMessages);
}
