/**
 * HER2-LADDER paired slide viewer: H&E and HER2 IHC side by side (OpenSeadragon 6).
 *
 * Loaded by the case page as an ES module, after the global `OpenSeadragon`
 * script; reads its configuration from <script id="case-viewer-config"> and
 * builds everything inside <div id="case-viewer">. See docs/viewer.md.
 *
 * Alignment (between slides[0], the reference H&E, and slides[1], the IHC):
 *
 *     p_ihc = scale * R(rotation) * p_he + (offset_x, offset_y)
 *
 * in level-0 pixels of each slide, rotation in degrees clockwise on screen
 * (y down). Default: offset 0, rotation 0, scale = mpp_he / mpp_ihc (1 when an
 * mpp is unknown). The maths lives in ./alignment.js.
 *
 * Public API (window.caseViewer, also resolved by `caseViewerReady`):
 *
 *   viewers               [osdViewerHE, osdViewerIHC, ...] OpenSeadragon.Viewer
 *   panes                 [{index, slide, viewer, overlayRoot, imageToElement(p),
 *                           elementToImage(p), getView()}]
 *   getState()            {center: {x, y} (H&E level-0 px), zoom (screen px per
 *                           H&E level-0 px), rotation (degrees clockwise)} | null
 *   setState(state, {animate = false} = {})
 *                         move the H&E view; the other slides follow through the
 *                         alignment (even while sync is off: it is an explicit move)
 *   onChange(cb)          cb(state) at most once per animation frame when the view
 *                         changes; returns an unsubscribe function
 *   alignment             current alignment {offset_x, offset_y, rotation, scale}
 *                         (a copy; null with a single slide)
 *   setAlignment(a), saveAlignment() -> Promise<boolean>
 *   sync (get), setSync(bool), setAlignMode(bool), setRulerMode(bool)
 *   ready                 Promise resolved when every slide has opened
 *
 * Also dispatches `caseviewer:change` (CustomEvent, detail = state) on document,
 * debounced to animation frames, and `caseviewer:alignment` after a save.
 */

import {
  AlignmentError,
  alignmentFromViews,
  defaultAlignment,
  movingViewFromReference,
  normaliseAlignment,
  normaliseDegrees,
  referenceViewFromMoving,
  viewsClose,
} from './alignment.js';
import { chooseScaleBar, formatDistance } from './measure.js';
import { RegistrationSync } from './registration_field.js';

export class CaseViewerConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CaseViewerConfigError';
  }
}

const ROOT_ID = 'case-viewer';
const CONFIG_ID = 'case-viewer-config';
const ARROW_PAN_PX = 80;            // screen px per arrow key press
const ALIGN_NUDGE_PX = 10;          // finer in align mode
const ALIGN_ROTATE_STEP = 1;        // degrees per r / shift+r in align mode
const ZOOM_STEP = 1.5;

const SHORTCUTS = [
  ['s', 'Sync navigation on / off'],
  ['a', 'Align mode on / off (leaving it saves the alignment)'],
  ['m', 'Ruler: click-drag to measure'],
  ['Esc', 'Clear measurements, close this help'],
  ['r / Shift+r', 'Rotate 90\u00b0 clockwise / anticlockwise (1\u00b0 in align mode)'],
  ['f', 'Full screen'],
  ['0', 'Home (whole slide)'],
  ['\u2190 \u2191 \u2192 \u2193', 'Pan (moves the IHC alone in align mode)'],
  ['+ / -', 'Zoom in / out'],
  ['?', 'This help'],
];

// ---------------------------------------------------------------------------
// small DOM helpers

function el(tag, { className, text, attrs = {} } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

// 16 px stroke icons (inline: no icon font, no network; glyphs like U+1F4CF are
// missing from many hospital desktops' fonts).
const ICONS = {
  rotateLeft: '<path d="M3 8a5 5 0 1 0 1.6-3.7"/><path d="M3.2 1.8v3h3"/>',
  rotateRight: '<path d="M13 8a5 5 0 1 1-1.6-3.7"/><path d="M12.8 1.8v3h-3"/>',
  ruler: '<path d="M1.8 10.8 10.8 1.8l3.4 3.4-9 9z"/><path d="M4.6 8 6 9.4M6.9 5.7l1.4 1.4M9.2 3.4l1.4 1.4"/>',
  home: '<path d="M2 8.2 8 2.6l6 5.6"/><path d="M3.8 7v6.6h8.4V7"/>',
  fullscreen: '<path d="M2 6V2h4M10 2h4v4M14 10v4h-4M6 14H2v-4"/>',
};

function icon(name) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'cv-icon');
  svg.innerHTML = ICONS[name];
  return svg;
}

function button({ label, text, iconName, shortcut, className = '', pressed = null }) {
  const title = shortcut ? `${label} (${shortcut})` : label;
  const attrs = { type: 'button', 'aria-label': label, title };
  if (pressed !== null) attrs['aria-pressed'] = String(pressed);
  const node = el('button', { className: `cv-btn ${className}`.trim(), text, attrs });
  if (iconName) node.append(icon(iconName));
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function round(value, digits) {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

// ---------------------------------------------------------------------------
// configuration

export function parseConfig(raw) {
  let config;
  try {
    config = typeof raw === 'string' ? JSON.parse(raw) : raw;
  } catch (error) {
    throw new CaseViewerConfigError(`#${CONFIG_ID} is not valid JSON: ${error.message}`);
  }
  if (!config || !Array.isArray(config.slides) || config.slides.length === 0) {
    throw new CaseViewerConfigError('config.slides must list at least one slide');
  }
  config.slides.forEach((slide, index) => {
    if (!slide || typeof slide.dzi_url !== 'string' || !slide.dzi_url) {
      throw new CaseViewerConfigError(`config.slides[${index}].dzi_url is missing`);
    }
    const mpp = slide.mpp;
    if (mpp !== null && mpp !== undefined && !(Number(mpp) > 0)) {
      throw new CaseViewerConfigError(`config.slides[${index}].mpp must be a positive number or null, got ${mpp}`);
    }
  });
  return config;
}

// ---------------------------------------------------------------------------
// one slide: OpenSeadragon viewer + toolbar + scale bar + ruler + overlay root

class SlidePane {
  constructor({ index, slide, host, caseViewer, config }) {
    this.index = index;
    this.slide = slide;
    this.caseViewer = caseViewer;
    this.mpp = Number(slide.mpp) > 0 ? Number(slide.mpp) : null;
    this.opened = false;
    this.expectedView = null;      // view we set from sync: its echo is ignored
    this.ruler = null;             // {start, end} in level-0 px
    this._rulerDragging = false;

    const stain = slide.stain || (index === 0 ? 'he' : 'ihc');
    const label = slide.label || stain.toUpperCase();
    const name = slide.name || '';
    this.root = el('section', {
      className: 'cv-pane',
      attrs: { 'data-stain': stain, 'data-index': String(index), 'aria-label': `${label} slide ${name}` },
    });
    const mppText = this.mpp ? `${this.mpp.toFixed(3)} \u00b5m/px` : 'mpp unknown';
    this.header = el('header', { className: 'cv-pane-bar' }, [
      el('span', { className: 'cv-stain', text: label }),
      el('span', { className: 'cv-slide-name', text: name, attrs: { title: name } }),
      el('span', { className: 'cv-mpp', text: mppText, attrs: { title: 'Microns per pixel at full resolution' } }),
    ]);
    this.stage = el('div', { className: 'cv-stage' });
    this.osdElement = el('div', { className: 'cv-osd', attrs: { id: `case-viewer-osd-${index}` } });
    this.scaleBar = el('div', { className: 'cv-scalebar', attrs: { 'aria-live': 'off' } }, [
      el('div', { className: 'cv-scalebar-bar' }),
      el('div', { className: 'cv-scalebar-label' }),
    ]);
    this.stage.append(this.osdElement, this.scaleBar);
    this.root.append(this.header, this.stage);
    host.append(this.root);

    const options = {
      element: this.osdElement,
      tileSources: slide.dzi_url,
      prefixUrl: config.osdImagesUrl || '/static/vendor/openseadragon/images/',
      showNavigator: true,
      navigatorPosition: 'BOTTOM_RIGHT',
      navigatorAutoFade: false,
      showNavigationControl: false,   // our toolbar replaces OSD's buttons
      keyboardNavEnabled: false,      // our shortcuts, on document (OSD's 'a'/'s'/'f' would clash)
      preserveImageSizeOnResize: true, // keep um per screen pixel when the window resizes
      visibilityRatio: 0.2,
      minZoomImageRatio: 0.5,
      maxZoomPixelRatio: 4,
      animationTime: 0.6,
      silenceMultiImageWarnings: true,
      gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true, flickEnabled: false },
      crossOriginPolicy: false,
    };
    // OpenSeadragon's canvas drawer: its WebGL drawer (the default since OSD 5) draws a rotated
    // view as a patchwork (tiles of the wrong place, blank rectangles: seen in Chromium on every
    // rotated IHC of a registered pair; e2e test_a_rotated_slide_is_drawn_whole).
    options.drawer = config.drawer || 'canvas';
    this.viewer = OpenSeadragon(options);

    // Overlay root for other modules (cell layers, annotations): inside the OSD
    // canvas so it scrolls under the navigator; element px = canvas px.
    this.overlayRoot = el('div', { className: 'cv-overlay-root' });
    this.rulerSvg = svgEl('svg', { class: 'cv-ruler-layer', 'aria-hidden': 'true' });
    this.overlayRoot.append(this.rulerSvg);
    this.viewer.canvas.append(this.overlayRoot);

    // Resolves true when the slide opened, false when it failed (never rejects:
    // one broken slide must not block the other).
    this.opened_ = new Promise((resolve) => {
      this.viewer.addOnceHandler('open', () => resolve(true));
      this.viewer.addOnceHandler('open-failed', (event) => {
        this._openFailed(event);
        resolve(false);
      });
    });
    this.viewer.addHandler('open', () => {
      this.opened = true;
      caseViewer._paneOpened(this);
      this.render();
    });
    this.viewer.addHandler('viewport-change', () => caseViewer._paneViewChanged(this));
    this.viewer.addHandler('update-viewport', () => this.render());
    this.viewer.addHandler('resize', () => this.render());
    this._bindRuler();
    this.root.addEventListener('pointerdown', () => caseViewer._setActivePane(this), true);
    this.root.addEventListener('pointerenter', () => caseViewer._setActivePane(this));
  }

  _openFailed(event) {
    const message = `Could not open ${this.slide.label || 'slide'}: ${event && event.message ? event.message : 'unknown error'}`;
    this.stage.append(el('div', { className: 'cv-pane-error', text: message, attrs: { role: 'alert' } }));
    this.caseViewer.toast(message, { error: true });
  }

  get item() {
    return this.viewer.world.getItemCount() ? this.viewer.world.getItemAt(0) : null;
  }

  /** The view in this slide's own level-0 px; current (animated) values by default. */
  getView({ current = true } = {}) {
    const item = this.item;
    if (!this.opened || !item) return null;
    const viewport = this.viewer.viewport;
    const center = viewport.getCenter(current);
    const image = item.viewportToImageCoordinates(center.x, center.y, true);
    return {
      center: { x: image.x, y: image.y },
      zoom: item.viewportToImageZoom(viewport.getZoom(current)),
      rotation: viewport.getRotation(current),
    };
  }

  /** Show the given view (level-0 px of this slide). */
  setView(view, { immediately = true } = {}) {
    const item = this.item;
    if (!this.opened || !item) return;
    const viewport = this.viewer.viewport;
    viewport.setRotation(view.rotation, immediately);
    viewport.zoomTo(item.imageToViewportZoom(view.zoom), null, immediately);
    viewport.panTo(item.imageToViewportCoordinates(view.center.x, view.center.y, true), immediately);
  }

  /** Level-0 px of this slide -> px in the viewer element (and overlayRoot). */
  imageToElement(point) {
    const item = this.item;
    const viewportPoint = item.imageToViewportCoordinates(point.x, point.y, true);
    const pixel = this.viewer.viewport.pixelFromPoint(viewportPoint, true);
    return { x: pixel.x, y: pixel.y };
  }

  /** Px in the viewer element -> level-0 px of this slide. */
  elementToImage(point) {
    const item = this.item;
    const viewportPoint = this.viewer.viewport.pointFromPixel(new OpenSeadragon.Point(point.x, point.y), true);
    const image = item.viewportToImageCoordinates(viewportPoint.x, viewportPoint.y, true);
    return { x: image.x, y: image.y };
  }

  render() {
    this._renderScaleBar();
    this._renderRuler();
  }

  _renderScaleBar() {
    const label = this.scaleBar.querySelector('.cv-scalebar-label');
    const bar = this.scaleBar.querySelector('.cv-scalebar-bar');
    const view = this.getView();
    if (!this.mpp) {
      this.scaleBar.classList.add('cv-scalebar-unknown');
      bar.style.width = '0px';
      label.textContent = 'mpp unknown';
      return;
    }
    if (!view) return;
    const choice = chooseScaleBar({ umPerScreenPixel: this.mpp / view.zoom });
    if (!choice) return;
    bar.style.width = `${choice.widthPx.toFixed(1)}px`;
    label.textContent = choice.label;
    this.scaleBar.dataset.lengthUm = String(choice.lengthUm);
  }

  _bindRuler() {
    const viewer = this.viewer;
    viewer.addHandler('canvas-press', (event) => {
      if (!this.caseViewer.rulerMode || !this.opened) return;
      const start = this.elementToImage(event.position);
      this.ruler = { start, end: start };
      this._rulerDragging = true;
      this.render();
    });
    viewer.addHandler('canvas-drag', (event) => {
      if (!this.caseViewer.rulerMode) return;
      event.preventDefaultAction = true; // measure instead of pan
      if (!this._rulerDragging || !this.ruler) return;
      this.ruler.end = this.elementToImage(event.position);
      this.render();
    });
    viewer.addHandler('canvas-release', () => {
      this._rulerDragging = false;
    });
    viewer.addHandler('canvas-click', (event) => {
      if (this.caseViewer.rulerMode) event.preventDefaultAction = true;
    });
    viewer.addHandler('canvas-double-click', (event) => {
      if (this.caseViewer.rulerMode) event.preventDefaultAction = true;
    });
  }

  /** Length of the current measurement: {distancePx, label} or null. */
  getMeasurement() {
    if (!this.ruler) return null;
    const distancePx = Math.hypot(this.ruler.end.x - this.ruler.start.x, this.ruler.end.y - this.ruler.start.y);
    return { distancePx, micrometres: this.mpp ? distancePx * this.mpp : null, label: formatDistance({ distancePx, mpp: this.mpp }) };
  }

  clearRuler() {
    this.ruler = null;
    this._rulerDragging = false;
    this.render();
  }

  _renderRuler() {
    const svg = this.rulerSvg;
    svg.replaceChildren();
    const measurement = this.getMeasurement();
    if (!measurement || !this.opened) return;
    const a = this.imageToElement(this.ruler.start);
    const b = this.imageToElement(this.ruler.end);
    const line = { x1: a.x, y1: a.y, x2: b.x, y2: b.y };
    svg.append(svgEl('line', { ...line, class: 'cv-ruler-halo' }));
    svg.append(svgEl('line', { ...line, class: 'cv-ruler-line' }));
    for (const p of [a, b]) svg.append(svgEl('circle', { cx: p.x, cy: p.y, r: 3.5, class: 'cv-ruler-end' }));
    const text = svgEl('text', { x: (a.x + b.x) / 2 + 8, y: (a.y + b.y) / 2 - 8, class: 'cv-ruler-label' });
    text.textContent = measurement.label;
    svg.append(text);
  }

  /** Pan by screen pixels (x right, y down). */
  panByPixels(dx, dy) {
    const viewport = this.viewer.viewport;
    viewport.panBy(viewport.deltaPointsFromPixels(new OpenSeadragon.Point(dx, dy)));
  }
}

// ---------------------------------------------------------------------------
// the pair (or more) of slides

class CaseViewer {
  constructor({ root, config }) {
    this.root = root;
    this.config = config;
    this.csrfToken = config.csrfToken || '';
    this.syncEnabled = true;
    this.alignMode = false;
    this.rulerMode = false;
    this._listeners = new Set();
    this._changeScheduled = false;
    this._applying = false;
    this.activePane = null;

    const slides = config.slides;
    const alignmentConfig = config.alignment || null;
    this.alignmentUrl = alignmentConfig && alignmentConfig.url ? alignmentConfig.url : null;
    this.alignmentEditable = Boolean(slides.length > 1 && this.alignmentUrl && alignmentConfig.editable !== false);
    if (slides.length > 1) {
      this.defaultAlignment = defaultAlignment({ mppReference: slides[0].mpp, mppMoving: slides[1].mpp });
      let initial = this.defaultAlignment;
      if (alignmentConfig && alignmentConfig.scale !== undefined && alignmentConfig.scale !== null) {
        try {
          initial = normaliseAlignment(alignmentConfig);
        } catch (error) {
          if (!(error instanceof AlignmentError)) throw error;
          this._pendingToast = `Saved alignment ignored: ${error.message}`;
        }
      }
      this.savedAlignment = { ...initial };
      this._alignment = { ...initial };
    } else {
      this.defaultAlignment = null;
      this.savedAlignment = null;
      this._alignment = null;
    }

    root.classList.add('cv-root');
    root.setAttribute('role', 'region');
    root.setAttribute('aria-label', 'Slide viewer');
    root.setAttribute('tabindex', '-1'); // focus lands here when the help closes (not a tab stop)
    root.replaceChildren();
    this._buildToolbar();
    this.panesHost = el('div', { className: 'cv-panes' });
    this.toastRegion = el('div', { className: 'cv-toasts', attrs: { 'aria-live': 'polite' } });
    this.helpOverlay = this._buildHelp();
    root.append(this.panesHost, this.toastRegion, this.helpOverlay);

    this.panes = slides.map((slide, index) => new SlidePane({ index, slide, host: this.panesHost, caseViewer: this, config }));
    this.panesHost.style.setProperty('--cv-pane-count', String(this.panes.length));
    this.activePane = this.panes[0];
    // Non-rigid field of the automatic registration, Auto / Reset-to-automatic buttons, linked cursor.
    this.registration = new RegistrationSync(this);
    this.ready = Promise.all([...this.panes.map((pane) => pane.opened_), this.registration.loaded]).then(() => this);

    this._onKeyDown = (event) => this._handleKey(event);
    document.addEventListener('keydown', this._onKeyDown);
    document.addEventListener('fullscreenchange', () => this._updateButtons());
    this._updateButtons();
    if (this._pendingToast) this.toast(this._pendingToast, { error: true });
  }

  // ----- transforms between the reference slide and slide i

  /** Alignment from slides[0] to slides[index] (identity for 0). */
  transformFor(index) {
    if (index === 0) return null;
    if (index === 1) return this._alignment;
    const other = this.config.slides[index];
    return defaultAlignment({ mppReference: this.config.slides[0].mpp, mppMoving: other.mpp });
  }

  _toReference(pane, view) {
    if (pane.index === 0) return view;
    const alignment = this.transformFor(pane.index);
    return this.registration.referenceView(pane.index, alignment, view) || referenceViewFromMoving(alignment, view);
  }

  _fromReference(pane, referenceView) {
    if (pane.index === 0) return referenceView;
    const alignment = this.transformFor(pane.index);
    return this.registration.movingView(pane.index, alignment, referenceView) || movingViewFromReference(alignment, referenceView);
  }

  /** Put every other opened pane on the view matching `source`'s view. */
  _propagate(source, view) {
    const referenceView = this._toReference(source, view);
    for (const pane of this.panes) {
      if (pane === source || !pane.opened) continue;
      const target = this._fromReference(pane, referenceView);
      this._applying = true;
      try {
        pane.setView(target, { immediately: true });
      } finally {
        this._applying = false;
      }
      pane.expectedView = pane.getView();
      pane.render();
    }
  }

  _paneOpened(pane) {
    const reference = this.panes[0];
    if (pane === reference) {
      if (this.panes.some((other) => other !== reference && other.opened)) this._propagate(reference, reference.getView());
    } else if (reference.opened && (this.syncEnabled || this.alignMode)) {
      const target = this._fromReference(pane, reference.getView());
      pane.setView(target, { immediately: true });
      pane.expectedView = pane.getView();
    }
    this._scheduleChange();
  }

  _paneViewChanged(pane) {
    if (this._applying) return; // re-entrant call from our own setView
    const view = pane.getView();
    if (!view) return;
    if (pane.expectedView && viewsClose(view, pane.expectedView)) {
      return; // the echo of a sync we applied: not a user move
    }
    pane.expectedView = null;
    this._scheduleChange();
    if (this.alignMode && pane.index === 1) {
      // Align mode: the IHC moves alone; its offset from the H&E *is* the alignment.
      const reference = this.panes[0].getView();
      if (reference) this._alignment = alignmentFromViews(reference, view);
      this._updateAlignReadout();
      return;
    }
    if (this.syncEnabled || this.alignMode) this._propagate(pane, view);
  }

  _setActivePane(pane) {
    this.activePane = pane;
  }

  // ----- change notification

  _scheduleChange() {
    if (this._changeScheduled) return;
    this._changeScheduled = true;
    requestAnimationFrame(() => {
      this._changeScheduled = false;
      const state = this.getState();
      if (!state) return;
      this._updateRotationControl();
      for (const listener of [...this._listeners]) {
        try {
          listener(state);
        } catch (error) {
          console.error('caseViewer change listener failed', error);
        }
      }
      document.dispatchEvent(new CustomEvent('caseviewer:change', { detail: state }));
    });
  }

  getState() {
    const view = this.panes[0].getView();
    if (!view) return null;
    return { center: { ...view.center }, zoom: view.zoom, rotation: view.rotation };
  }

  setState(state, { animate = false } = {}) {
    if (!state || !state.center || !(state.zoom > 0)) {
      throw new CaseViewerConfigError('setState needs {center: {x, y}, zoom > 0, rotation}');
    }
    const reference = this.panes[0];
    const view = { center: { x: Number(state.center.x), y: Number(state.center.y) }, zoom: Number(state.zoom), rotation: Number(state.rotation) || 0 };
    reference.setView(view, { immediately: !animate });
    if (!animate || !this.syncEnabled) this._propagate(reference, view);
    reference.expectedView = animate ? null : reference.getView();
    this._scheduleChange();
  }

  onChange(callback) {
    this._listeners.add(callback);
    return () => this._listeners.delete(callback);
  }

  get viewers() {
    return this.panes.map((pane) => pane.viewer);
  }

  get alignment() {
    return this._alignment ? { ...this._alignment } : null;
  }

  get sync() {
    return this.syncEnabled;
  }

  // ----- modes

  setSync(enabled) {
    this.syncEnabled = Boolean(enabled);
    if (this.syncEnabled && this.panes[0].opened) this._propagate(this.panes[0], this.panes[0].getView());
    this._updateButtons();
  }

  /** Use this alignment now (not saved) and re-place the IHC from the H&E view. */
  setAlignment(alignment) {
    if (this.panes.length < 2) throw new AlignmentError('a single slide has no alignment');
    this._alignment = normaliseAlignment(alignment);
    if (this.panes[0].opened) this._propagate(this.panes[0], this.panes[0].getView());
    this._updateAlignReadout();
  }

  async setAlignMode(enabled) {
    if (!this.alignmentEditable) return false;
    if (enabled && !this.alignMode) {
      this.alignMode = true;
      this.root.classList.add('cv-aligning');
      this._updateButtons();
      this._updateAlignReadout();
      this.toast('Align mode: drag, rotate or zoom the IHC until it matches the H&E, then Save.');
      return true;
    }
    if (!enabled && this.alignMode) {
      // Leaving align mode saves; on failure we stay, so nothing is lost.
      const saved = await this.saveAlignment();
      if (saved) this._leaveAlignMode();
      return saved;
    }
    return true;
  }

  _leaveAlignMode() {
    this.alignMode = false;
    this.root.classList.remove('cv-aligning');
    this._updateButtons();
  }

  cancelAlignment() {
    if (!this.alignMode) return;
    this._leaveAlignMode();
    this.setAlignment(this.savedAlignment);
    this.toast('Alignment changes discarded.');
  }

  resetAlignment() {
    this.setAlignment(this.defaultAlignment);
    this.toast('Alignment reset to default (not saved yet).');
  }

  /** The alignment as the current views define it (align mode) or as set. */
  _alignmentToSave() {
    if (this.alignMode) {
      const reference = this.panes[0].getView({ current: false });
      const moving = this.panes[1].getView({ current: false });
      if (reference && moving) this._alignment = alignmentFromViews(reference, moving);
    }
    const a = this._alignment;
    // Rounded far below a pixel / a hundredth of a degree: no float noise in the DB.
    return { offset_x: round(a.offset_x, 3), offset_y: round(a.offset_y, 3), rotation: round(a.rotation, 6), scale: round(a.scale, 9) };
  }

  /** PUT the alignment to the server. Resolves true on HTTP 200. */
  async saveAlignment() {
    if (!this.alignmentEditable) return false;
    const body = this._alignmentToSave();
    let response;
    try {
      response = await fetch(this.alignmentUrl, {
        method: 'PUT',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRFToken': this.csrfToken },
        body: JSON.stringify(body),
      });
    } catch (error) {
      this.toast(`Alignment not saved: ${error.message}`, { error: true });
      return false;
    }
    if (response.status !== 200) {
      let detail = '';
      try {
        detail = (await response.text()).slice(0, 200);
      } catch (_) { /* body unreadable: status is enough */ }
      this.toast(`Alignment not saved (HTTP ${response.status})${detail ? `: ${detail}` : ''}`, { error: true });
      return false;
    }
    this.savedAlignment = { ...body };
    this._alignment = { ...body };
    this.toast('Alignment saved.');
    document.dispatchEvent(new CustomEvent('caseviewer:alignment', { detail: { ...body } }));
    return true;
  }

  setRulerMode(enabled) {
    this.rulerMode = Boolean(enabled);
    this.root.classList.toggle('cv-measuring', this.rulerMode);
    this._updateButtons();
  }

  clearMeasurements() {
    for (const pane of this.panes) pane.clearRuler();
  }

  // ----- navigation commands

  /** Pane that navigation commands move: the IHC in align mode, else the active one. */
  _navigationPane({ moving = false } = {}) {
    if (this.alignMode) return moving ? this.panes[1] : this.panes[0];
    return this.syncEnabled ? this.panes[0] : this.activePane || this.panes[0];
  }

  rotateBy(degrees, { moving = false } = {}) {
    const pane = this._navigationPane({ moving });
    const viewport = pane.viewer.viewport;
    viewport.setRotation(viewport.getRotation() + degrees);
  }

  setRotation(degrees) {
    if (this.alignMode) {
      // Slider in align mode sets the alignment rotation about the screen centre.
      const reference = this.panes[0].getView();
      const moving = this.panes[1].getView();
      if (!reference || !moving) return;
      this.panes[1].setView({ ...moving, rotation: reference.rotation - degrees }, { immediately: true });
      return;
    }
    this._navigationPane().viewer.viewport.setRotation(degrees);
  }

  zoomBy(factor) {
    const viewport = this._navigationPane().viewer.viewport;
    viewport.zoomBy(factor);
    viewport.applyConstraints();
  }

  goHome() {
    const pane = this._navigationPane();
    pane.viewer.viewport.goHome();
  }

  panByPixels(dx, dy) {
    this._navigationPane({ moving: true }).panByPixels(dx, dy);
  }

  async toggleFullScreen() {
    try {
      if (document.fullscreenElement) await document.exitFullscreen();
      else await this.root.requestFullscreen();
    } catch (error) {
      this.toast(`Full screen unavailable: ${error.message}`, { error: true });
    }
  }

  // ----- UI

  _buildToolbar() {
    const twoSlides = this.config.slides.length > 1;
    const b = {};
    b.sync = button({ label: 'Sync navigation', text: 'Sync', shortcut: 's', pressed: true, className: 'cv-sync' });
    b.align = button({ label: 'Align IHC to H&E', text: 'Align', shortcut: 'a', pressed: false, className: 'cv-align' });
    b.save = button({ label: 'Save alignment', text: 'Save', className: 'cv-align-save cv-align-only' });
    b.cancel = button({ label: 'Discard alignment changes', text: 'Cancel', className: 'cv-align-cancel cv-align-only' });
    b.reset = button({ label: 'Reset alignment to default', text: 'Reset', className: 'cv-align-reset cv-align-only' });
    b.rotateLeft = button({ label: 'Rotate 90\u00b0 anticlockwise', iconName: 'rotateLeft', shortcut: 'Shift+r', className: 'cv-rotate-left' });
    b.rotateRight = button({ label: 'Rotate 90\u00b0 clockwise', iconName: 'rotateRight', shortcut: 'r', className: 'cv-rotate-right' });
    b.rotation = el('input', {
      className: 'cv-rotation',
      attrs: { type: 'range', min: '-180', max: '180', step: '1', value: '0', 'aria-label': 'Rotation in degrees', title: 'Free rotation' },
    });
    b.rotationValue = el('output', { className: 'cv-rotation-value', text: '0\u00b0', attrs: { 'aria-live': 'off' } });
    b.ruler = button({ label: 'Ruler: click-drag to measure', iconName: 'ruler', shortcut: 'm', pressed: false, className: 'cv-ruler' });
    b.home = button({ label: 'Home (whole slide)', iconName: 'home', shortcut: '0', className: 'cv-home' });
    b.zoomOut = button({ label: 'Zoom out', text: '\u2212', shortcut: '-', className: 'cv-zoom-out' });
    b.zoomIn = button({ label: 'Zoom in', text: '+', shortcut: '+', className: 'cv-zoom-in' });
    b.fullscreen = button({ label: 'Full screen', iconName: 'fullscreen', shortcut: 'f', pressed: false, className: 'cv-fullscreen' });
    b.help = button({ label: 'Keyboard shortcuts', text: '?', shortcut: '?', className: 'cv-help' });
    b.alignReadout = el('span', { className: 'cv-align-readout cv-align-only', attrs: { 'aria-live': 'polite' } });

    const group = (label, items) => el('div', { className: 'cv-group', attrs: { role: 'group', 'aria-label': label } }, items);
    const groups = [];
    if (twoSlides) groups.push(group('Pairing', [b.sync]));
    if (twoSlides && this.alignmentEditable) groups.push(group('Alignment', [b.align, b.save, b.cancel, b.reset, b.alignReadout]));
    groups.push(group('Rotation', [b.rotateLeft, b.rotation, b.rotationValue, b.rotateRight]));
    groups.push(group('Tools', [b.ruler]));
    groups.push(group('Zoom', [b.zoomOut, b.home, b.zoomIn]));
    groups.push(group('View', [b.fullscreen, b.help]));
    this.toolbar = el('div', { className: 'cv-toolbar', attrs: { role: 'toolbar', 'aria-label': 'Slide viewer tools' } }, groups);
    this.root.append(this.toolbar);
    this.buttons = b;

    b.sync.addEventListener('click', () => this.setSync(!this.syncEnabled));
    b.align.addEventListener('click', () => this.setAlignMode(!this.alignMode));
    b.save.addEventListener('click', async () => {
      if (await this.saveAlignment()) this._leaveAlignMode();
    });
    b.cancel.addEventListener('click', () => this.cancelAlignment());
    b.reset.addEventListener('click', () => this.resetAlignment());
    b.rotateLeft.addEventListener('click', () => this.rotateBy(-90, { moving: true }));
    b.rotateRight.addEventListener('click', () => this.rotateBy(90, { moving: true }));
    b.rotation.addEventListener('input', () => this.setRotation(Number(b.rotation.value)));
    b.ruler.addEventListener('click', () => this.setRulerMode(!this.rulerMode));
    b.home.addEventListener('click', () => this.goHome());
    b.zoomOut.addEventListener('click', () => this.zoomBy(1 / ZOOM_STEP));
    b.zoomIn.addEventListener('click', () => this.zoomBy(ZOOM_STEP));
    b.fullscreen.addEventListener('click', () => this.toggleFullScreen());
    b.help.addEventListener('click', () => this.toggleHelp());
  }

  _buildHelp() {
    const rows = SHORTCUTS.map(([keys, what]) => el('tr', {}, [el('th', { text: keys, attrs: { scope: 'row' } }), el('td', { text: what })]));
    const close = button({ label: 'Close help', text: '\u00d7', className: 'cv-help-close' });
    close.addEventListener('click', () => this.toggleHelp(false));
    const dialog = el('div', { className: 'cv-help-dialog', attrs: { role: 'dialog', 'aria-modal': 'true', 'aria-label': 'Keyboard shortcuts' } }, [
      el('div', { className: 'cv-help-head' }, [el('h2', { text: 'Keyboard shortcuts' }), close]),
      el('table', {}, [el('tbody', {}, rows)]),
    ]);
    const overlay = el('div', { className: 'cv-help-overlay', attrs: { hidden: '' } }, [dialog]);
    overlay.addEventListener('click', (event) => {
      if (event.target === overlay) this.toggleHelp(false);
    });
    return overlay;
  }

  toggleHelp(show) {
    const visible = show === undefined ? this.helpOverlay.hidden : Boolean(show);
    if (visible === !this.helpOverlay.hidden) return;
    if (visible) this._helpOpener = document.activeElement;
    this.helpOverlay.hidden = !visible;
    if (visible) {
      this.helpOverlay.querySelector('.cv-help-close').focus();
      return;
    }
    // Focus goes back where it was (dialog practice), else to the viewer: never left on the
    // hidden close button, where some browsers keep it and the viewer's keys go nowhere.
    const opener = this._helpOpener;
    this._helpOpener = null;
    if (opener && opener !== document.body && opener.isConnected && opener.getClientRects().length) opener.focus();
    else this.root.focus({ preventScroll: true });
  }

  _updateButtons() {
    const b = this.buttons;
    b.sync.setAttribute('aria-pressed', String(this.syncEnabled));
    b.align.setAttribute('aria-pressed', String(this.alignMode));
    b.ruler.setAttribute('aria-pressed', String(this.rulerMode));
    b.fullscreen.setAttribute('aria-pressed', String(document.fullscreenElement === this.root));
    const rotateTarget = this.alignMode ? 'IHC ' : '';
    b.rotateLeft.title = `Rotate ${rotateTarget}90\u00b0 anticlockwise (Shift+r)`;
    b.rotateRight.title = `Rotate ${rotateTarget}90\u00b0 clockwise (r)`;
    b.rotation.setAttribute('aria-label', this.alignMode ? 'IHC rotation relative to H&E, degrees' : 'Rotation in degrees');
    this._updateRotationControl();
  }

  _updateRotationControl() {
    let degrees;
    if (this.alignMode && this._alignment) degrees = this._alignment.rotation;
    else {
      const view = this._navigationPane().getView();
      degrees = view ? view.rotation : 0;
    }
    degrees = normaliseDegrees(degrees);
    if (document.activeElement !== this.buttons.rotation) this.buttons.rotation.value = String(Math.round(degrees));
    this.buttons.rotationValue.textContent = `${Math.round(degrees)}\u00b0`;
  }

  _updateAlignReadout() {
    const a = this._alignment;
    if (!a || !this.buttons.alignReadout) return;
    this.buttons.alignReadout.textContent =
      `dx ${a.offset_x.toFixed(1)} px, dy ${a.offset_y.toFixed(1)} px, ${a.rotation.toFixed(1)}\u00b0, \u00d7${a.scale.toFixed(4)}`;
    this._updateRotationControl();
  }

  toast(message, { error = false, timeoutMs } = {}) {
    const node = el('div', { className: `cv-toast${error ? ' cv-toast-error' : ''}`, text: message, attrs: error ? { role: 'alert' } : {} });
    this.toastRegion.append(node);
    setTimeout(() => node.remove(), timeoutMs || (error ? 8000 : 3500));
    return node;
  }

  _handleKey(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    // Only when the viewer is on the page's foreground (not behind another dialog).
    if (!this.root.isConnected) return;
    const key = event.key;
    let handled = true;
    if (!this.helpOverlay.hidden && key !== '?' && key !== 'Escape') return;
    switch (key) {
      case '?': this.toggleHelp(); break;
      case 'Escape':
        if (!this.helpOverlay.hidden) this.toggleHelp(false);
        else this.clearMeasurements();
        break;
      case 's': case 'S': this.setSync(!this.syncEnabled); break;
      case 'a': case 'A': this.setAlignMode(!this.alignMode); break;
      case 'm': case 'M': this.setRulerMode(!this.rulerMode); break;
      case 'r': this.rotateBy(this.alignMode ? ALIGN_ROTATE_STEP : 90, { moving: true }); break;
      case 'R': this.rotateBy(this.alignMode ? -ALIGN_ROTATE_STEP : -90, { moving: true }); break;
      case 'f': case 'F': this.toggleFullScreen(); break;
      case '0': this.goHome(); break;
      case '+': case '=': this.zoomBy(ZOOM_STEP); break;
      case '-': case '_': this.zoomBy(1 / ZOOM_STEP); break;
      case 'ArrowLeft': case 'ArrowRight': case 'ArrowUp': case 'ArrowDown': {
        const step = (this.alignMode ? ALIGN_NUDGE_PX : ARROW_PAN_PX) * (event.shiftKey ? 5 : 1);
        // Arrow = move the view that way (the image slides the other way).
        const dx = key === 'ArrowLeft' ? -step : key === 'ArrowRight' ? step : 0;
        const dy = key === 'ArrowUp' ? -step : key === 'ArrowDown' ? step : 0;
        this.panByPixels(dx, dy);
        break;
      }
      default: handled = false;
    }
    if (handled) event.preventDefault();
  }
}

// ---------------------------------------------------------------------------
// boot

function showFatal(root, message) {
  root.replaceChildren(el('div', { className: 'cv-fatal', text: message, attrs: { role: 'alert' } }));
}

export function startCaseViewer({ root = document.getElementById(ROOT_ID), configElement = document.getElementById(CONFIG_ID) } = {}) {
  if (!root) throw new CaseViewerConfigError(`#${ROOT_ID} not found on the page`);
  if (typeof window.OpenSeadragon !== 'function') {
    showFatal(root, 'OpenSeadragon did not load (static/vendor/openseadragon missing: run scripts/vendor_static.py).');
    throw new CaseViewerConfigError('global OpenSeadragon is missing');
  }
  if (!configElement) {
    showFatal(root, `Viewer configuration (#${CONFIG_ID}) missing.`);
    throw new CaseViewerConfigError(`#${CONFIG_ID} not found on the page`);
  }
  let config;
  try {
    config = parseConfig(configElement.textContent);
  } catch (error) {
    showFatal(root, error.message);
    throw error;
  }
  const viewer = new CaseViewer({ root, config });
  window.caseViewer = viewer;
  document.dispatchEvent(new CustomEvent('caseviewer:ready', { detail: viewer }));
  return viewer;
}

export const caseViewerReady = new Promise((resolve, reject) => {
  const boot = () => {
    try {
      const viewer = startCaseViewer();
      viewer.ready.then(() => resolve(viewer));
    } catch (error) {
      console.error(error);
      reject(error);
    }
  };
  // Module scripts run after parsing, but guard for pages that inject us early.
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot, { once: true });
  else boot();
});
caseViewerReady.catch(() => { /* already shown on the page and logged */ });
