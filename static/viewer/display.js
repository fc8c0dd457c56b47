/**
 * Per-pane display controls of the case viewer (docs/viewer.md): magnification presets
 * (1.25x, 5x, 10x, 20x, 40x, from the slide's mpp: an objective of M x shows 10 / M um per
 * screen pixel, the usual 40x = 0.25 um/px convention) with keys 1-5 on the active pane, and
 * brightness / contrast / gamma per pane. The adjustments are a CSS/SVG filter on the pane's
 * OpenSeadragon drawing canvas, on the client only: tiles, snapshots and analyses never see them.
 * The WebGL cell layers and the annotations are drawn on their own layers, unfiltered.
 *
 * window.caseDisplay = {ready, presets: [...], magnification(i), setMagnification(i, m),
 *   adjustments(i), setAdjustments(i, {brightness, contrast, gamma}), reset(i)}
 */
export const PRESETS = [1.25, 5, 10, 20, 40];
const DEFAULTS = { brightness: 1, contrast: 1, gamma: 1 };
const MENU_PASSES_KEYS = ['1', '2', '3', '4', '5', '?'];
const SVG_NS = 'http://www.w3.org/2000/svg';

/** Screen px per level-0 px that shows `magnification` on a slide of `mpp` um/px. */
export function zoomForMagnification(magnification, mpp) {
  return (mpp * magnification) / 10;
}

export function magnificationOfZoom(zoom, mpp) {
  return (10 * zoom) / mpp;
}

function el(tag, { className, text, attrs = {} } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) if (child) node.append(child);
  return node;
}

function formatMagnification(m) {
  if (!Number.isFinite(m)) return '–';
  return `${m >= 10 ? m.toFixed(0) : m.toFixed(m >= 2 ? 1 : 2).replace(/\.?0+$/, '')}×`;
}

class PaneDisplay {
  constructor(pane, defs) {
    this.pane = pane;
    this.index = pane.index;
    this.values = { ...DEFAULTS };
    this.mpp = pane.mpp;
    // The gamma transfer function: one SVG filter per pane, referenced from the CSS filter.
    this.filterId = `cv-display-gamma-${pane.index}`;
    const filter = document.createElementNS(SVG_NS, 'filter');
    filter.setAttribute('id', this.filterId);
    filter.setAttribute('color-interpolation-filters', 'sRGB');
    const transfer = document.createElementNS(SVG_NS, 'feComponentTransfer');
    this.funcs = ['feFuncR', 'feFuncG', 'feFuncB'].map((name) => {
      const f = document.createElementNS(SVG_NS, name);
      f.setAttribute('type', 'gamma');
      f.setAttribute('amplitude', '1');
      f.setAttribute('offset', '0');
      f.setAttribute('exponent', '1');
      transfer.append(f);
      return f;
    });
    filter.append(transfer);
    defs.append(filter);

    this.readout = el('button', { className: 'cv-display-toggle', text: '–',
      attrs: { type: 'button', 'aria-expanded': 'false', 'aria-label': 'Magnification and display',
        title: this.mpp ? 'Magnification (keys 1-5) and brightness / contrast / gamma' : 'Brightness / contrast / gamma (mpp unknown: no magnification)' } });
    this.readout.addEventListener('click', () => this.setOpen(this.popover.hidden));
    pane.header.append(this.readout);

    const presets = el('div', { className: 'cv-display-presets', attrs: { role: 'group', 'aria-label': 'Magnification' } },
      PRESETS.map((m, i) => {
        const b = el('button', { text: formatMagnification(m), attrs: { type: 'button', 'data-magnification': String(m),
          title: this.mpp ? `${formatMagnification(m)} (${(10 / m).toFixed(2)} µm per screen pixel) · key ${i + 1}` : 'mpp unknown' } });
        if (!this.mpp) b.disabled = true;
        b.addEventListener('click', () => this.setMagnification(m));
        return b;
      }));
    this.sliders = {};
    const slider = (key, label, min, max, step) => {
      const input = el('input', { attrs: { type: 'range', min: String(min), max: String(max), step: String(step),
        'data-adjust': key, 'aria-label': label } });
      input.value = String(this.values[key]);
      const value = el('output', { className: 'cv-display-value', text: this.values[key].toFixed(2) });
      input.addEventListener('input', () => this.setAdjustments({ [key]: Number(input.value) }));
      this.sliders[key] = { input, value };
      return el('label', { className: 'cv-display-row' }, [el('span', { text: label }), input, value]);
    };
    const reset = el('button', { text: 'Reset', attrs: { type: 'button', 'data-adjust': 'reset' } });
    reset.addEventListener('click', () => this.reset());
    const close = el('button', { className: 'cv-display-close', text: '×', attrs: { type: 'button', 'aria-label': 'Close display settings' } });
    close.addEventListener('click', () => this.setOpen(false));
    this.popover = el('div', { className: 'cv-display', attrs: { hidden: '', role: 'dialog', 'aria-label': 'Magnification and display' } }, [
      el('div', { className: 'cv-display-head' }, [el('strong', { text: 'Magnification' }), close]),
      presets,
      el('strong', { text: 'Display (this pane, not saved)' }),
      slider('brightness', 'Brightness', 0.4, 1.8, 0.05),
      slider('contrast', 'Contrast', 0.4, 2.5, 0.05),
      slider('gamma', 'Gamma', 0.4, 2.5, 0.05),
      el('div', { className: 'cv-display-foot' }, [reset]),
    ]);
    // Pointer events stay in the menu (no pan, zoom or cell pick under it). Keys too (no pan
    // on the arrows), except the magnification keys and '?', which work from inside it; Esc
    // closes it (CaseDisplay._onEscape).
    for (const type of ['pointerdown', 'mousedown', 'wheel', 'dblclick', 'click']) {
      this.popover.addEventListener(type, (event) => event.stopPropagation());
    }
    this.popover.addEventListener('keydown', (event) => {
      if (!MENU_PASSES_KEYS.includes(event.key)) event.stopPropagation();
    });
    pane.stage.append(this.popover);
    pane.viewer.addHandler('update-viewport', () => this.updateReadout());
    pane.viewer.addHandler('open', () => { this.updateReadout(); this.apply(); });
    this.updateReadout();
    this.apply();
  }

  setOpen(open) {
    const hadFocus = this.popover.contains(document.activeElement);
    this.popover.hidden = !open;
    this.readout.setAttribute('aria-expanded', String(Boolean(open)));
    if (!open && hadFocus) this.readout.focus(); // not stranded on a hidden button
  }

  magnification() {
    const view = this.pane.getView();
    if (!view || !this.mpp) return null;
    return magnificationOfZoom(view.zoom, this.mpp);
  }

  setMagnification(m) {
    const view = this.pane.getView();
    if (!view || !this.mpp) return false;
    this.pane.setView({ ...view, zoom: zoomForMagnification(m, this.mpp) }, { immediately: false });
    return true;
  }

  updateReadout() {
    const m = this.magnification();
    const changed = this.values.brightness !== 1 || this.values.contrast !== 1 || this.values.gamma !== 1;
    this.readout.textContent = `${m === null ? 'Display' : formatMagnification(m)}${changed ? ' ◐' : ''}`;
    for (const b of this.popover.querySelectorAll('button[data-magnification]')) {
      const preset = Number(b.dataset.magnification);
      b.setAttribute('aria-pressed', String(m !== null && Math.abs(m / preset - 1) < 0.02));
    }
  }

  setAdjustments(values) {
    for (const key of Object.keys(DEFAULTS)) {
      if (values[key] === undefined) continue;
      const v = Number(values[key]);
      if (Number.isFinite(v) && v > 0) this.values[key] = v;
    }
    this.apply();
  }

  reset() { this.setAdjustments(DEFAULTS); }

  /** The drawing canvas of the slide (OpenSeadragon's drawer), not the overlay layers. */
  target() {
    const drawer = this.pane.viewer.drawer;
    return (drawer && drawer.canvas) || this.pane.viewer.canvas.querySelector('canvas');
  }

  apply() {
    const { brightness, contrast, gamma } = this.values;
    for (const f of this.funcs) f.setAttribute('exponent', String(1 / gamma));
    const parts = [];
    if (brightness !== 1) parts.push(`brightness(${brightness})`);
    if (contrast !== 1) parts.push(`contrast(${contrast})`);
    if (gamma !== 1) parts.push(`url(#${this.filterId})`);
    const canvas = this.target();
    if (canvas) canvas.style.filter = parts.join(' ');
    for (const [key, { input, value }] of Object.entries(this.sliders)) {
      input.value = String(this.values[key]);
      value.textContent = this.values[key].toFixed(2);
    }
    this.updateReadout();
  }
}

class CaseDisplay {
  constructor(caseViewer) {
    this.caseViewer = caseViewer;
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'cv-display-defs');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('width', '0');
    svg.setAttribute('height', '0');
    const defs = document.createElementNS(SVG_NS, 'defs');
    svg.append(defs);
    document.body.append(svg);
    this.panes = caseViewer.panes.map((pane) => new PaneDisplay(pane, defs));
    this.presets = PRESETS;
    this._addHelpRows();
    document.addEventListener('keydown', (event) => this._onKey(event));
    // Capture phase: Esc closes an open menu before the viewer's own Esc (clear measurements).
    document.addEventListener('keydown', (event) => this._onEscape(event), true);
  }

  _onEscape(event) {
    if (event.key !== 'Escape') return;
    const help = this.caseViewer.helpOverlay;
    if (help && !help.hidden) return; // the help dialog is on top: this Esc closes it
    const open = this.panes.filter((p) => !p.popover.hidden);
    if (!open.length) return;
    for (const p of open) p.setOpen(false);
    event.preventDefault();
    event.stopPropagation(); // one Esc closes one thing
  }

  _addHelpRows() {
    const body = this.caseViewer.helpOverlay && this.caseViewer.helpOverlay.querySelector('tbody');
    if (!body) return;
    body.append(el('tr', {}, [el('th', { text: '1 … 5', attrs: { scope: 'row' } }),
      el('td', { text: 'Magnification 1.25× / 5× / 10× / 20× / 40× (active slide, from its µm per pixel)' })]));
  }

  _onKey(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    const i = ['1', '2', '3', '4', '5'].indexOf(event.key);
    if (i < 0) return;
    const help = this.caseViewer.helpOverlay;
    if (help && !help.hidden) return;
    const pane = this.caseViewer.activePane || this.caseViewer.panes[0];
    const display = this.panes.find((p) => p.pane === pane) || this.panes[0];
    if (display && display.setMagnification(PRESETS[i])) event.preventDefault();
  }

  _pane(i) {
    const p = this.panes[i];
    if (!p) throw new Error(`no pane ${i}`);
    return p;
  }

  magnification(i) { return this._pane(i).magnification(); }

  setMagnification(i, m) { return this._pane(i).setMagnification(m); }

  adjustments(i) { return { ...this._pane(i).values, filter: this._pane(i).target()?.style.filter || '' }; }

  setAdjustments(i, values) { this._pane(i).setAdjustments(values); }

  reset(i) { this._pane(i).reset(); }
}

function start(caseViewer) {
  if (window.caseDisplay || !caseViewer || !caseViewer.panes) return;
  window.caseDisplay = new CaseDisplay(caseViewer);
  window.caseDisplay.ready = caseViewer.ready.then(() => window.caseDisplay);
}

if (window.caseViewer) start(window.caseViewer);
else document.addEventListener('caseviewer:ready', (event) => start(event.detail), { once: true });
