/**
 * Overlay layers on the paired slide viewer (docs/overlays-frontend.md).
 *
 * Per pane: the layers of the slide's latest analysis (GET /api/slides/<id>/ -> overlays),
 * a layer panel (toggle, opacity, legend with counts and per-class / per-pair toggles),
 * PNG overlay tiles zoomed out (an OpenSeadragon TiledImage aligned on the slide), and,
 * zoomed in, the viewport's binary records drawn with WebGL2 (overlay_gl.js). Hover
 * highlights the nearest cell, click opens the cell inspector; a click on a row of the
 * score card's attribution table highlights that feature's source cells and edges.
 *
 * window.caseOverlays = {ready, layers(i), setVisible(i, name, on), setOpacity(i, name, o),
 *   setHidden(i, name, key, hidden), highlightFeature(name), clearHighlight(), getState(),
 *   setState(state), selectAttribution(name), inspect(i, cellId), status(i)}
 */
import {
  CLASS_KEYS, HER2_KEYS, HER2_NONE, boundsOf, cellAt, cellGrid, clipRect, highlightMasks, legendPalette,
  outlineZoom, parseCells, parseContours, parseEdges, pointSizePx, rectContains, wantRecords,
} from './overlay_data.js';
import { OverlayRenderer } from './overlay_gl.js';
import { metricName, pairHead, pairKey } from './metric_names.js';

const RECORD_KINDS = new Set(['cells', 'her2', 'edges']);
const DRAW_ORDER = { density: 0, edges: 1, cells: 2, her2: 3 };
const TILE_HIDE_KINDS = new Set(['cells', 'her2', 'edges']);  // legend toggles also filter the PNG tiles
const FETCH_MARGIN = 0.5;      // fetch the view grown by half its size on each side
const REFRESH_DELAY_MS = 160;  // debounce of the refetch after pan / zoom
const REFRESH_THROTTLE_MS = 300; // refetch while still panning, when the view left the records
const HOVER_RADIUS_PX = 6;
const VIEWER_KEYS_FROM_PANELS = ['1', '2', '3', '4', '5', '?'];

function el(tag, { className, text, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) if (child) node.append(child);
  return node;
}

function fmt(value, digits = 3) {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return String(value);
    if (Number.isInteger(value)) return value.toLocaleString('en-US');
    return Number(value.toPrecision(digits + 1)).toString();
  }
  if (typeof value === 'string') return value.replace(/_/g, ' ');
  return JSON.stringify(value);
}

async function getJson(url) {
  const response = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

class PaneOverlays {
  constructor(manager, pane) {
    this.manager = manager;
    this.pane = pane;
    this.index = pane.index;
    this.viewer = pane.viewer;
    this.slide = pane.slide;
    this.layers = [];
    this.state = new Map();     // name -> {visible, opacity, hidden: Set}
    this.tiled = new Map();     // name -> TiledImage | 'pending'
    this.tiledUrl = new Map();  // name -> DZI URL of its TiledImage (?hide=... follows the legend)
    this.records = new Map();   // name -> {rect, parsed, grid}
    this.contours = new Map();  // name -> {rect, cells, segments}: nucleus outlines, zoomed far in
    this.fetching = new Map();  // name -> {controller, rect}
    this.refused = new Map();   // name -> smallest area answered 413
    this.highlight = null;      // masks from highlightMasks
    this.hoverId = 0;
    this.hoverLayer = null;
    this.pointer = null;        // {x, y, dragging} in element px while the pointer is over the slide
    this.selected = null;       // inspector cell JSON
    this.renderer = null;
    this.glError = null;
    this.fetchCount = 0;
    this._refreshTimer = 0;
    this._buildDom();
  }

  _buildDom() {
    this.canvas = el('canvas', { className: 'ov-gl', attrs: { 'aria-hidden': 'true' } });
    this.contourSvg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    this.contourSvg.setAttribute('class', 'ov-contour');
    this.contourSvg.setAttribute('aria-hidden', 'true');
    this.pane.overlayRoot.prepend(this.canvas, this.contourSvg);
    try {
      this.renderer = new OverlayRenderer(this.canvas);
    } catch (error) {
      this.glError = String(error.message || error);
      console.warn(`overlays: ${this.glError}; zoomed-in layers stay on PNG tiles`);
    }
    this.panel = el('div', { className: 'ov-panel', attrs: { 'data-pane': String(this.index) } });
    this.toggle = el('button', { className: 'ov-panel-toggle', text: 'Layers',
      attrs: { type: 'button', 'aria-expanded': 'false', title: 'Overlay layers of the cell analysis' } });
    this.body = el('div', { className: 'ov-panel-body', attrs: { hidden: '' } });
    this.body.append(el('p', { className: 'ov-muted', text: 'Loading layers…' }));
    this.toggle.addEventListener('click', () => this.setPanelOpen(this.body.hasAttribute('hidden')));
    this.panel.append(this.toggle, this.body);
    this.banner = el('div', { className: 'ov-banner', attrs: { hidden: '', role: 'status' } });
    this.tooltip = el('div', { className: 'ov-tooltip', attrs: { hidden: '' } });
    this.inspector = el('aside', { className: 'ov-inspector', attrs: { hidden: '', 'aria-label': 'Cell inspector' } });
    this.pane.stage.append(this.panel, this.banner, this.tooltip, this.inspector);
    // Keep OSD from panning when the panel is used; the viewer's magnification keys and '?'
    // still work with the focus in the panel.
    for (const node of [this.panel, this.inspector, this.banner]) {
      for (const type of ['pointerdown', 'mousedown', 'wheel', 'dblclick', 'click']) {
        node.addEventListener(type, (event) => event.stopPropagation());
      }
      node.addEventListener('keydown', (event) => {
        if (event.key === 'Escape' && node === this.inspector) { this.closeInspector(); this.pane.viewer.canvas.focus?.(); }
        if (!VIEWER_KEYS_FROM_PANELS.includes(event.key)) event.stopPropagation();
      });
    }
  }

  get inspectorOpen() { return !this.inspector.hasAttribute('hidden'); }

  setPanelOpen(open) {
    if (open) this.body.removeAttribute('hidden'); else this.body.setAttribute('hidden', '');
    this.toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
  }

  async load() {
    let data;
    try {
      data = await getJson(`/api/slides/${this.slide.id}/`);
    } catch (error) {
      this.body.replaceChildren(el('p', { className: 'ov-muted', text: `Layers unavailable (${error.message})` }));
      return;
    }
    this.layers = Array.isArray(data.overlays) ? data.overlays : [];
    this.slideSize = { width: data.width || this.slide.width, height: data.height || this.slide.height };
    for (const layer of this.layers) {
      if (!this.state.has(layer.name)) {
        this.state.set(layer.name, { visible: false, opacity: layer.kind === 'density' ? 0.6 : 0.85, hidden: new Set(), fill: false });
      }
    }
    this._renderPanel();
    this.viewer.addHandler('update-viewport', () => this.draw());
    this.viewer.addHandler('resize', () => { this.draw(); this.scheduleRefresh(); });
    this.viewer.addHandler('viewport-change', () => this.scheduleRefresh());
    this.viewer.addHandler('animation-finish', () => this.scheduleRefresh(0));
    this.viewer.addHandler('canvas-click', (event) => this._onClick(event));
    this.viewer.element.addEventListener('pointermove', (event) => this._onPointerMove(event));
    this.viewer.element.addEventListener('pointerleave', () => this._onPointerLeave());
    this._applyAll();
  }

  // ---- layer state

  layer(name) { return this.layers.find((layer) => layer.name === name); }

  setVisible(name, visible) {
    const state = this.state.get(name);
    if (!state) throw new Error(`no layer ${name} on pane ${this.index}`);
    state.visible = Boolean(visible);
    this._syncControls(name);
    this._apply(name);
  }

  setOpacity(name, opacity) {
    const state = this.state.get(name);
    if (!state) throw new Error(`no layer ${name} on pane ${this.index}`);
    state.opacity = Math.max(0, Math.min(1, Number(opacity)));
    this._syncControls(name);
    this._apply(name);
  }

  setHidden(name, key, hidden) {
    const state = this.state.get(name);
    if (!state) throw new Error(`no layer ${name} on pane ${this.index}`);
    if (hidden) state.hidden.add(key); else state.hidden.delete(key);
    this._syncControls(name);
    const layer = this.layer(name);
    if (layer && state.visible) this._ensureTiles(layer);  // zoomed out too: tiles without those classes
    this.draw();
  }

  /** Fill the nucleus outlines (translucent) or draw the outlines only (the default: the nucleus shows). */
  setFill(name, fill) {
    const state = this.state.get(name);
    if (!state) throw new Error(`no layer ${name} on pane ${this.index}`);
    state.fill = Boolean(fill);
    this._syncControls(name);
    this.draw();
  }

  _applyAll() {
    for (const layer of this.layers) this._apply(layer.name);
  }

  /** Make tiles / records match the state of one layer, then redraw. */
  _apply(name) {
    const layer = this.layer(name);
    const state = this.state.get(name);
    if (!layer || !state) return;
    if (!state.visible) {
      this._removeTiles(name);
      this._dropRecords(name);
    } else {
      this._ensureTiles(layer);
      if (RECORD_KINDS.has(layer.kind)) this._refreshLayer(layer);
    }
    this._updateTileOpacity(name);
    this.draw();
  }

  /** The layer's DZI URL; `?hide=` lists the legend codes unticked, which the server leaves out of the tiles. */
  tileUrl(layer) {
    const hidden = this.state.get(layer.name)?.hidden;
    if (!hidden || !hidden.size || !TILE_HIDE_KINDS.has(layer.kind)) return layer.dzi_url;
    const codes = (layer.legend || []).filter((entry) => hidden.has(entry.key)).map((entry) => entry.code);
    return codes.length ? `${layer.dzi_url}?hide=${codes.sort((a, b) => a - b).join(',')}` : layer.dzi_url;
  }

  _ensureTiles(layer) {
    if (!layer.dzi_url) return;
    const url = this.tileUrl(layer);
    const current = this.tiled.get(layer.name);
    // A pending load re-checks the URL when it lands; a loaded one with the right URL stays.
    if (current === 'pending' || (current && this.tiledUrl.get(layer.name) === url)) return;
    // The legend changed: new tiles. (Swapping in place is not safe: OpenSeadragon's navigator
    // mirrors the world by index and breaks when items come and go while others load.)
    if (current) this._removeTiles(layer.name);
    const item = this.pane.item;
    if (!item) return;
    const bounds = item.getBounds();
    this.tiled.set(layer.name, 'pending');
    this.viewer.addTiledImage({
      tileSource: url,
      x: bounds.x,
      y: bounds.y,
      width: bounds.width,
      opacity: 0,
      success: (event) => {
        if (this.tiled.get(layer.name) !== 'pending' || !this.state.get(layer.name).visible) {
          this.viewer.world.removeItem(event.item);
          if (this.tiled.get(layer.name) === 'pending') this.tiled.delete(layer.name);
          return;
        }
        this.tiled.set(layer.name, event.item);
        this.tiledUrl.set(layer.name, url);
        this._orderTiles();
        this._updateTileOpacity(layer.name);
        if (this.tileUrl(layer) !== url) this._ensureTiles(layer);  // the legend changed meanwhile
      },
      error: (event) => {
        this.tiled.delete(layer.name);
        console.warn(`overlay tiles ${layer.name}: ${event && event.message}`);
      },
    });
  }

  _removeTiles(name) {
    const item = this.tiled.get(name);
    if (item && item !== 'pending') this.viewer.world.removeItem(item);
    this.tiled.delete(name);
    this.tiledUrl.delete(name);
  }

  _orderTiles() {
    // slide first, then density < edges < cells < her2
    const items = [...this.tiled.entries()].filter(([, item]) => item !== 'pending');
    items.sort((a, b) => (DRAW_ORDER[this.layer(a[0]).kind] ?? 9) - (DRAW_ORDER[this.layer(b[0]).kind] ?? 9));
    let index = 1;
    for (const [, item] of items) {
      if (this.viewer.world.getIndexOfItem(item) >= 0) this.viewer.world.setItemIndex(item, Math.min(index, this.viewer.world.getItemCount() - 1));
      index += 1;
    }
  }

  /** Records drawn (and covering the view) -> the PNG tiles of that layer step aside. */
  _updateTileOpacity(name) {
    const item = this.tiled.get(name);
    const state = this.state.get(name);
    if (!item || item === 'pending' || !state) return;
    let opacity = state.visible ? state.opacity : 0;
    if (this.mode(name) === 'records' || this.outlined(name)) opacity = 0;
    else if (this.highlight && state.visible) {
      opacity *= this.highlight.layers.includes(name) ? 1 : 0.3;
    }
    if (item.getOpacity() !== opacity) item.setOpacity(opacity);
  }

  /** 'records' when WebGL draws this layer over the whole view, else 'tiles' (or 'off'). */
  mode(name) {
    const state = this.state.get(name);
    if (!state || !state.visible) return 'off';
    const records = this.records.get(name);
    if (!records || !this.renderer) return 'tiles';
    const view = this.viewRect();
    return view && rectContains(records.rect, clipRect(view, this.slideSize.width, this.slideSize.height)) ? 'records' : 'tiles';
  }

  // ---- viewport records

  /** The level-0 rectangle the pane shows now (rotation included). */
  viewRect() {
    if (!this.pane.item) return null;
    const w = this.viewer.container.clientWidth; const h = this.viewer.container.clientHeight;
    if (!w || !h) return null;
    const corners = [{ x: 0, y: 0 }, { x: w, y: 0 }, { x: 0, y: h }, { x: w, y: h }].map((p) => this.pane.elementToImage(p));
    return boundsOf(corners);
  }

  scheduleRefresh(delay = REFRESH_DELAY_MS) {
    // Panning past the fetched records: refetch now (at most every REFRESH_THROTTLE_MS), not only at rest.
    const now = performance.now();
    if (delay && now - (this._lastEager || 0) > REFRESH_THROTTLE_MS && this._recordsStale()) {
      this._lastEager = now;
      for (const layer of this.layers) {
        if (RECORD_KINDS.has(layer.kind) && this.state.get(layer.name).visible) this._refreshLayer(layer);
      }
    }
    clearTimeout(this._refreshTimer);
    this._refreshTimer = setTimeout(() => {
      for (const layer of this.layers) {
        if (RECORD_KINDS.has(layer.kind) && this.state.get(layer.name).visible) this._refreshLayer(layer);
      }
      for (const layer of this.layers) this._updateTileOpacity(layer.name);
      this._updateBanner();
      this.draw();
    }, delay);
  }

  /** Some visible layer holds records that no longer cover the view. */
  _recordsStale() {
    if (!this.records.size) return false;
    const view = this.viewRect();
    if (!view) return false;
    const seen = clipRect(view, this.slideSize.width, this.slideSize.height);
    for (const [name, records] of this.records) {
      if (!rectContains(records.rect, seen) && !this.fetching.has(name)) return true;
    }
    for (const [name, contours] of this.contours) {
      if (!rectContains(contours.rect, seen) && !this.fetching.has(`${name}:contours`)) return true;
    }
    return false;
  }

  /** Outlines drawn for this layer now (zoomed far in, contour records covering the view)? */
  outlined(name) {
    const state = this.state.get(name);
    const contours = this.contours.get(name);
    if (!state || !state.visible || !contours || !this.renderer) return false;
    const t = this.pane.getView();
    if (!t || !outlineZoom({ zoom: t.zoom, mpp: this.slide.mpp })) return false;
    const view = this.viewRect();
    return Boolean(view && rectContains(contours.rect, clipRect(view, this.slideSize.width, this.slideSize.height)));
  }

  _refreshContours(layer) {
    const key = `${layer.name}:contours`;
    const pending = this.fetching.get(key);
    const view = this.viewRect();
    const t = this.pane.getView();
    if (!this.renderer || !layer.contours_url || !view || !t || !outlineZoom({ zoom: t.zoom, mpp: this.slide.mpp })) {
      if (pending) { pending.controller.abort(); this.fetching.delete(key); }
      return;
    }
    const { width, height } = this.slideSize;
    const seen = clipRect(view, width, height);
    const have = this.contours.get(layer.name);
    if (have && rectContains(have.rect, seen)) return;
    if (pending && rectContains(pending.rect, seen)) return;
    if (pending) pending.controller.abort();
    const rect = clipRect(boundsOf([{ x: view.x, y: view.y }, { x: view.x + view.width, y: view.y + view.height }], FETCH_MARGIN), width, height);
    this._fetchContours(layer, rect, key);
  }

  async _fetchContours(layer, rect, key) {
    const controller = new AbortController();
    const entry = { controller, rect };
    this.fetching.set(key, entry);
    const url = `${layer.contours_url}?x=${rect.x}&y=${rect.y}&width=${rect.width}&height=${rect.height}`;
    try {
      const started = performance.now();
      const response = await fetch(url, { credentials: 'same-origin', signal: controller.signal });
      if (response.status === 413) return;  // too many nuclei in view: discs stay
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const buffer = await response.arrayBuffer();
      if (this.fetching.get(key) !== entry || !this.state.get(layer.name).visible) return;
      const parsed = parseContours(buffer);
      this.renderer.setRecords(`${layer.name}:outline`, 'contours', parsed.buffer, parsed.segments);
      this.contours.set(layer.name, { rect, cells: parsed.cells, segments: parsed.segments, bytes: buffer.byteLength,
        ms: Math.round(performance.now() - started) });
      this._updateTileOpacity(layer.name);
      this.draw();
    } catch (error) {
      if (error.name !== 'AbortError') console.warn(`overlay outlines ${layer.name}: ${error.message}`);
    } finally {
      if (this.fetching.get(key) === entry) this.fetching.delete(key);
    }
  }

  _dropContours(name) {
    const key = `${name}:contours`;
    const pending = this.fetching.get(key);
    if (pending) { pending.controller.abort(); this.fetching.delete(key); }
    if (this.contours.has(name)) {
      this.contours.delete(name);
      if (this.renderer) this.renderer.drop(`${name}:outline`);
    }
  }

  _refreshLayer(layer) {
    if (layer.contours_url) this._refreshContours(layer);
    if (!this.renderer || !layer.viewport_url) return;
    const view = this.viewRect();
    if (!view) return;
    const { width, height } = this.slideSize;
    const seen = clipRect(view, width, height);
    const have = this.records.get(layer.name);
    const pending = this.fetching.get(layer.name);
    const rect = clipRect(boundsOf([{ x: view.x, y: view.y }, { x: view.x + view.width, y: view.y + view.height }], FETCH_MARGIN), width, height);
    if (!wantRecords({ layer, rect, slideWidth: width, slideHeight: height, refusedArea: this.refused.get(layer.name) })) {
      if (pending) pending.controller.abort();
      this._dropRecords(layer.name);
      return;
    }
    // Zoomed far in compared with what we hold: fetch again only if the view left it.
    if (have && rectContains(have.rect, seen) && have.rect.width * have.rect.height <= 16 * rect.width * rect.height) return;
    if (pending && rectContains(pending.rect, seen)) return;
    if (pending) pending.controller.abort();
    this._fetchRecords(layer, rect);
  }

  async _fetchRecords(layer, rect) {
    const controller = new AbortController();
    const entry = { controller, rect };
    this.fetching.set(layer.name, entry);
    const url = `${layer.viewport_url}?x=${rect.x}&y=${rect.y}&width=${rect.width}&height=${rect.height}`;
    try {
      const response = await fetch(url, { credentials: 'same-origin', signal: controller.signal });
      if (response.status === 413) {
        this.refused.set(layer.name, Math.min(this.refused.get(layer.name) ?? Infinity, rect.width * rect.height));
        this._dropRecords(layer.name);
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const buffer = await response.arrayBuffer();
      if (this.fetching.get(layer.name) !== entry || !this.state.get(layer.name).visible) return;
      const parsed = layer.kind === 'edges' ? parseEdges(buffer) : parseCells(buffer);
      const grid = layer.kind === 'edges' ? null : cellGrid(parsed);
      this.renderer.setRecords(layer.name, layer.kind, buffer, parsed.count);
      this.records.set(layer.name, { rect, parsed, grid });
      this.fetchCount += 1;
      this._updateTileOpacity(layer.name);
      this._updateBanner();
      this.draw();
    } catch (error) {
      if (error.name !== 'AbortError') console.warn(`overlay records ${layer.name}: ${error.message}`);
    } finally {
      if (this.fetching.get(layer.name) === entry) this.fetching.delete(layer.name);
    }
  }

  _dropRecords(name) {
    this._dropContours(name);
    const pending = this.fetching.get(name);
    if (pending) { pending.controller.abort(); this.fetching.delete(name); }
    if (this.records.has(name)) {
      this.records.delete(name);
      if (this.renderer) this.renderer.drop(name);
      this._updateTileOpacity(name);
    }
  }

  // ---- drawing

  /** Level-0 px -> CSS px of the overlay root, as an affine map (exact for OSD's view). */
  transform() {
    const view = this.pane.getView();
    if (!view) return null;
    const o = view.center;
    const span = 1000 / Math.max(view.zoom, 1e-6);
    const p0 = this.pane.imageToElement(o);
    const px = this.pane.imageToElement({ x: o.x + span, y: o.y });
    const py = this.pane.imageToElement({ x: o.x, y: o.y + span });
    const a = (px.x - p0.x) / span; const b = (px.y - p0.y) / span;
    const c = (py.x - p0.x) / span; const d = (py.y - p0.y) / span;
    return { a, b, c, d, e: p0.x - a * o.x - c * o.y, f: p0.y - b * o.x - d * o.y, zoom: view.zoom };
  }

  draw() {
    // The view, a layer or its records changed: what is under a still pointer may have too.
    if (this.pointer || this.hoverId) this._scheduleHover();
    this._drawContour();
    if (!this.renderer) return;
    const t = this.transform();
    if (!t) return;
    if (this.records.size && this.tiled.size) {
      // The view left the records mid-pan: the PNG tiles fill in until the refetch lands.
      for (const name of this.records.keys()) this._updateTileOpacity(name);
    }
    const draws = [];
    const layers = [...this.layers].sort((a, b) => (DRAW_ORDER[a.kind] ?? 9) - (DRAW_ORDER[b.kind] ?? 9));
    for (const layer of layers) {
      const state = this.state.get(layer.name);
      if (!state.visible || !this.records.has(layer.name)) continue;
      const highlight = this.highlight && (this.highlight.layers.includes(layer.name) || this.highlight.dimAll)
        ? this.highlight : null;
      if (this.outlined(layer.name)) {
        // Zoomed far in: each nucleus's stored contour in its class colour; the nucleus stays visible.
        const her2 = layer.kind === 'her2';
        draws.push({
          name: `${layer.name}:outline`,
          palette: legendPalette(layer.legend, state.hidden),
          opacity: this.highlight && !highlight ? state.opacity * 0.25 : state.opacity,
          mode: layer.kind,
          fill: her2 ? 0 : (state.fill ? 0.35 : 0),
          lineWidth: her2 ? 3 : 2,
          ring: her2 ? 3 : 0,
          highlight,
          hoverId: this.hoverLayer === layer.name ? this.hoverId : 0,
        });
        continue;
      }
      draws.push({
        name: layer.name,
        palette: legendPalette(layer.legend, state.hidden),
        opacity: this.highlight && !highlight ? state.opacity * 0.25 : state.opacity,
        pointSize: pointSizePx({ zoom: t.zoom, mpp: this.slide.mpp }) * (layer.kind === 'her2' ? 1.35 : 1),
        highlight,
        hoverId: this.hoverLayer === layer.name ? this.hoverId : 0,
      });
    }
    this.renderer.draw(t, draws);
    this.lastDraw = { layers: draws.map((d) => d.name), at: performance.now() };
  }

  _drawContour() {
    const svg = this.contourSvg;
    const cell = this.selected;
    if (!cell || !Array.isArray(cell.contour) || !cell.contour.length || !this.pane.item) {
      if (svg.firstChild) svg.replaceChildren();
      return;
    }
    const points = cell.contour.map(([x, y]) => this.pane.imageToElement({ x, y }));
    let poly = svg.firstChild;
    if (!poly) {
      poly = document.createElementNS('http://www.w3.org/2000/svg', 'polygon');
      svg.append(poly);
    }
    poly.setAttribute('points', points.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' '));
  }

  // ---- picking

  /** The cell record under element point p (CSS px), or null: {layer, index, cell}. */
  pick(p) {
    const t = this.transform();
    if (!t) return null;
    const image = this.pane.elementToImage(p);
    const nucleusPx = this.slide.mpp ? (9 / this.slide.mpp) * t.zoom : 36 * t.zoom;
    const radius = Math.max(HOVER_RADIUS_PX, Math.max(pointSizePx({ zoom: t.zoom, mpp: this.slide.mpp }), nucleusPx * 0.75) / 2) / t.zoom;
    const order = [...this.layers].filter((l) => l.kind === 'cells' || l.kind === 'her2').reverse();
    for (const layer of order) {
      const records = this.records.get(layer.name);
      const state = this.state.get(layer.name);
      if (!records || !state.visible || this.mode(layer.name) !== 'records') continue;
      const hidden = new Set([...state.hidden].map((key) => {
        const entry = (layer.legend || []).find((e) => e.key === key);
        return entry ? Number(entry.code) : -1;
      }));
      const { parsed } = records;
      const i = records.grid.nearest(image.x, image.y, radius, (k) => {
        const cell = cellAt(parsed, k);
        const code = layer.kind === 'her2' ? cell.her2Code : cell.classCode;
        return !hidden.has(code) && !(layer.kind === 'her2' && cell.her2Code === HER2_NONE);
      });
      if (i >= 0) return { layer, index: i, cell: cellAt(parsed, i) };
    }
    return null;
  }

  _onPointerMove(event) {
    const rect = this.viewer.element.getBoundingClientRect();
    this.pointer = { x: event.clientX - rect.left, y: event.clientY - rect.top, dragging: Boolean(event.buttons) };
    this._scheduleHover();
  }

  _onPointerLeave() {
    // A frame still pending from the last move must not show the tooltip again after the leave.
    this.pointer = null;
    if (this._hoverFrame) cancelAnimationFrame(this._hoverFrame);
    this._hoverFrame = 0;
    this._setHover(0, null);
  }

  _scheduleHover() {
    if (this._hoverFrame) return;
    this._hoverFrame = requestAnimationFrame(() => {
      this._hoverFrame = 0;
      this._refreshHover();
    });
  }

  /** Hover and tooltip for the cell under the pointer now (none while dragging or outside). */
  _refreshHover() {
    const p = this.pointer;
    const hit = p && !p.dragging ? this.pick(p) : null;
    if (!hit) {
      this._setHover(0, null);
      return;
    }
    this._setHover(hit.cell.id, hit.layer.name);
    const key = CLASS_KEYS[hit.cell.classCode] || 'cell';
    const grade = hit.cell.her2Code < HER2_KEYS.length ? ` · ${HER2_KEYS[hit.cell.her2Code].replace(/_/g, ' ')}` : '';
    this.tooltip.textContent = `${key}${grade} #${hit.cell.id}`;
    this.tooltip.style.left = `${p.x + 14}px`;
    this.tooltip.style.top = `${p.y + 14}px`;
    this.tooltip.removeAttribute('hidden');
  }

  _setHover(id, layerName) {
    if (!id) this.tooltip.setAttribute('hidden', '');
    this.viewer.element.classList.toggle('ov-hovering', Boolean(id));
    if (id === this.hoverId && layerName === this.hoverLayer) return;
    this.hoverId = id;
    this.hoverLayer = layerName;
    this.draw();
  }

  _onClick(event) {
    if (!event.quick || (this.pane.caseViewer && this.pane.caseViewer.rulerMode)) return;
    const hit = this.pick(event.position);
    if (hit) this.inspect(hit.cell.id);
  }

  // ---- inspector

  async inspect(cellId) {
    this.inspector.removeAttribute('hidden');
    this.inspector.replaceChildren(el('p', { className: 'ov-muted', text: `Cell #${cellId}…` }));
    let cell;
    try {
      cell = await getJson(`/api/slides/${this.slide.id}/cells/${cellId}/`);
    } catch (error) {
      this.inspector.replaceChildren(this._inspectorHead(`Cell #${cellId}`),
        el('p', { className: 'ov-error', text: `Could not load the cell (${error.message})`, attrs: { role: 'alert' } }));
      return null;
    }
    this.selected = cell;
    this._renderInspector(cell);
    this._placeInspector(cell);
    this.draw();
    return cell;
  }

  /** Keep the inspector off the clicked cell: on the other side of the pane, and if the pane is
   * too narrow for that, pan the cell into the part of the pane the panel leaves free. */
  _placeInspector(cell) {
    const stage = this.pane.stage.getBoundingClientRect();
    const p = this.pane.imageToElement({ x: cell.x, y: cell.y });
    const left = p.x > stage.width / 2;
    this.inspector.classList.toggle('ov-left', left);
    const box = this.inspector.getBoundingClientRect();
    const x0 = box.left - stage.left; const x1 = box.right - stage.left;
    const margin = 24;
    if (p.x + margin > x0 && p.x - margin < x1 && p.y + margin > box.top - stage.top && p.y - margin < box.bottom - stage.top) {
      const free = left ? (x1 + stage.width) / 2 : x0 / 2;  // middle of the uncovered strip
      if (typeof this.pane.panByPixels === 'function') this.pane.panByPixels(p.x - free, 0);
    }
    this.inspectorSide = left ? 'left' : 'right';
  }

  closeInspector() {
    this.inspector.setAttribute('hidden', '');
    this.selected = null;
    this.draw();
  }

  _inspectorHead(title) {
    const close = el('button', { className: 'ov-close', text: '×', attrs: { type: 'button', 'aria-label': 'Close the cell inspector' } });
    close.addEventListener('click', () => this.closeInspector());
    return el('div', { className: 'ov-inspector-head' }, [el('h3', { text: title }), close]);
  }

  _renderInspector(cell) {
    const rows = (pairs) => el('dl', { className: 'ov-dl' }, pairs.flatMap(([k, v, field, title]) => [
      el('dt', { text: k, attrs: title ? { title } : {} }), el('dd', { text: typeof v === 'string' && field === 'prob' ? v : fmt(v),
        attrs: field ? { 'data-field': field, ...(field === 'prob' && v === 'n/a' ? { title: 'This segmenter gives no class probability' } : {}) } : {} })]));
    const classColour = (this.layers.find((l) => l.kind === 'cells')?.legend || []).find((e) => e.key === cell.cls)?.color;
    const swatch = el('span', { className: 'ov-swatch', attrs: { style: `background:${classColour || '#999'}` } });
    const parts = [
      this._inspectorHead(`Cell #${cell.id}`),
      el('p', { className: 'ov-cellclass' }, [swatch, el('strong', { text: fmt(cell.cls), attrs: { 'data-field': 'cls' } })]),
      rows([['Class probability', cell.prob === null || cell.prob === undefined ? 'n/a' : cell.prob, 'prob'],
        ['Area (µm²)', cell.area_um2, 'area_um2'],
        ['x, y (px)', `${fmt(cell.x, 5)}, ${fmt(cell.y, 5)}`, 'xy']]),
    ];
    if (cell.her2) {
      parts.push(el('h4', { text: 'HER2 membrane' }), rows([['Class', cell.her2.class, 'her2_class'],
        ['DAB optical density', cell.her2.od, 'her2_od'], ['Completeness', cell.her2.completeness, 'her2_completeness']]));
    }
    if (cell.morphology && Object.keys(cell.morphology).length) {
      const details = el('details', { className: 'ov-morph' }, [el('summary', { text: `Morphology (${Object.keys(cell.morphology).length})` }),
        rows(Object.entries(cell.morphology).map(([k, v]) => {
          const [name, unit] = metricName(k);
          return [unit ? `${name} (${unit})` : name, v, `morph-${k}`, k];
        }))]);
      parts.push(details);
    }
    const graph = cell.graph || {};
    const pairs = Object.keys(graph);
    if (pairs.length) {
      const metrics = [...new Set(pairs.flatMap((p) => Object.keys(graph[p] || {})))];
      const table = el('table', { className: 'ov-graph' });
      table.append(el('thead', {}, [el('tr', {}, [el('th', { text: 'Metric', attrs: { scope: 'col' } }),
        ...pairs.map((p) => { const head = pairHead(p); return el('th', { text: head.short, attrs: { scope: 'col', title: head.long, 'data-pair': p } }); })])]));
      const body = el('tbody');
      for (const m of metrics) {
        // The server's plain name (viewer.cases.feature_labels) where it has one, else the page's.
        const [name, unit] = metricName(m);
        const text = cell.metric_labels?.[m] || (unit ? `${name} (${unit})` : name);
        body.append(el('tr', {}, [el('th', { text, attrs: { scope: 'row', title: m, 'data-metric-name': m } }),
          ...pairs.map((p) => el('td', { text: fmt(graph[p]?.[m]), attrs: { 'data-pair': p, 'data-metric': m } }))]));
      }
      table.append(body);
      parts.push(el('h4', { text: 'Cell graphs (sc-MTOP)' }), el('div', { className: 'ov-graph-wrap' }, [table]),
        el('p', { className: 'ov-muted ov-pair-key', text: `Graphs of cell pairs: ${pairKey(pairs)}` }));
    } else {
      parts.push(el('p', { className: 'ov-muted', text: 'Not in any cell graph.' }));
    }
    this.inspector.replaceChildren(...parts);
    this.inspector.dataset.cellId = String(cell.id);
  }

  // ---- highlight

  setHighlight(masks, featureName) {
    const previous = this.highlight;
    this.highlight = masks;
    if (previous && previous.switchedOn) {
      // Layers the previous highlight switched on go off again (unless the new one needs them).
      for (const name of previous.switchedOn) {
        if (!(masks && masks.layers.includes(name)) && this.state.get(name)) this.setVisible(name, false);
      }
    }
    if (masks) {
      masks.switchedOn = [];
      for (const name of masks.layers) {
        if (!this.state.get(name).visible) {
          this.setVisible(name, true);
          masks.switchedOn.push(name);
        } else if (previous && previous.switchedOn && previous.switchedOn.includes(name)) {
          masks.switchedOn.push(name);
        }
      }
      const what = [];
      const names = (keys, mask) => keys.filter((_, i) => mask & (1 << i)).join(', ').replace(/_/g, ' ');
      if (masks.classMask) what.push(names(CLASS_KEYS, masks.classMask) + (masks.her2Mask ? ` (${names(HER2_KEYS, masks.her2Mask)})` : ''));
      if (masks.partnerClassMask) what.push(`with ${names(CLASS_KEYS, masks.partnerClassMask)}`
        + (masks.partnerHer2Mask ? ` (${names(HER2_KEYS, masks.partnerHer2Mask)})` : ''));
      if (masks.pair) what.push(`edges ${masks.pair}`);
      this.banner.replaceChildren(el('span', { text: `${featureName}: ${what.join(' · ') || 'source cells'}` }),
        el('span', { className: 'ov-zoom-note', text: ' · zoom in to single out the cells', attrs: { hidden: '' } }));
      const clear = el('button', { text: 'Clear', attrs: { type: 'button' } });
      clear.addEventListener('click', () => this.manager.clearHighlight());
      this.banner.append(clear);
      this.banner.removeAttribute('hidden');
    } else {
      this.banner.setAttribute('hidden', '');
    }
    for (const layer of this.layers) this._updateTileOpacity(layer.name);
    this._updateBanner();
    this.draw();
  }

  /** The "zoom in" note shows while a highlighted layer is drawn from PNG tiles. */
  _updateBanner() {
    const note = this.banner.querySelector('.ov-zoom-note');
    if (!note || !this.highlight) return;
    const tiles = this.highlight.layers.some((name) => this.mode(name) === 'tiles' && !this.fetching.has(name));
    if (tiles) note.removeAttribute('hidden'); else note.setAttribute('hidden', '');
  }

  // ---- panel

  _renderPanel() {
    if (!this.layers.length) {
      this.body.replaceChildren(el('p', { className: 'ov-muted', text: 'No cell analysis yet: no layers.' }));
      return;
    }
    const first = this.layers[0];
    const parts = [el('p', { className: 'ov-muted ov-run', text: `Run ${first.run ?? ''} · ${first.segmenter || ''}` },
      [first.approximate ? el('span', { className: 'ov-tag', text: 'approximate', attrs: { title: 'Classical CPU segmentation: classes are approximate' } }) : null])];
    for (const layer of this.layers) {
      const state = this.state.get(layer.name);
      const id = `ov-${this.index}-${layer.name}`;
      const box = el('input', { attrs: { type: 'checkbox', id, 'data-layer': layer.name } });
      box.checked = state.visible;
      box.addEventListener('change', () => this.setVisible(layer.name, box.checked));
      const slider = el('input', { className: 'ov-opacity', attrs: { type: 'range', min: '0', max: '1', step: '0.05',
        'aria-label': `Opacity of ${layer.label}`, 'data-opacity': layer.name } });
      slider.value = String(state.opacity);
      slider.addEventListener('input', () => this.setOpacity(layer.name, Number(slider.value)));
      const legend = el('ul', { className: 'ov-legend' });
      const togglable = layer.kind !== 'density';
      for (const entry of layer.legend || []) {
        const item = el('li', { attrs: { 'data-key': entry.key } });
        const sw = el('span', { className: `ov-swatch${layer.kind === 'her2' ? ' ring' : ''}${layer.kind === 'edges' ? ' line' : ''}`,
          attrs: { style: `--c:${entry.color}` } });
        let label;
        if (togglable && entry.toggle !== false) {  // toggle false: a count only (HER2 "not graded")
          const keyBox = el('input', { attrs: { type: 'checkbox', 'data-key': entry.key, 'aria-label': `Show ${entry.label}` } });
          keyBox.checked = !state.hidden.has(entry.key);
          keyBox.addEventListener('change', () => this.setHidden(layer.name, entry.key, !keyBox.checked));
          label = el('label', {}, [keyBox, sw, el('span', { text: entry.label || entry.key })]);
        } else {
          label = el('span', {}, [sw, el('span', { text: entry.label || entry.key })]);
        }
        item.append(label, el('span', { className: 'ov-count', text: Number.isFinite(entry.count) ? fmt(entry.count) : '' }));
        legend.append(item);
      }
      const row = el('div', { className: 'ov-layer', attrs: { 'data-layer': layer.name, 'data-kind': layer.kind } }, [
        el('div', { className: 'ov-layer-head' }, [box, el('label', { text: layer.label || layer.name, attrs: { for: id } }), slider]),
        legend,
      ]);
      if (layer.kind === 'cells' && layer.contours_url) {
        const fill = el('input', { attrs: { type: 'checkbox', 'data-fill': layer.name } });
        fill.checked = state.fill;
        fill.addEventListener('change', () => this.setFill(layer.name, fill.checked));
        row.append(el('label', { className: 'ov-fill', attrs: { title: 'Zoomed in, nuclei are outlined; tick to fill them too' } },
          [fill, el('span', { text: 'Fill nucleus outlines' })]));
      }
      if (layer.kind === 'density' || !togglable) row.classList.add('ov-density');
      parts.push(row);
    }
    parts.push(el('p', { className: 'ov-muted ov-hint', text: layerHint(this.glError) }));
    this.body.replaceChildren(...parts);
    for (const layer of this.layers) this._syncControls(layer.name);
  }

  _syncControls(name) {
    const row = this.body.querySelector(`.ov-layer[data-layer="${CSS.escape(name)}"]`);
    const state = this.state.get(name);
    if (!row || !state) return;
    row.querySelector('input[type=checkbox][data-layer]').checked = state.visible;
    row.querySelector('input[type=range]').value = String(state.opacity);
    row.classList.toggle('ov-on', state.visible);
    const fill = row.querySelector('input[data-fill]');
    if (fill) fill.checked = state.fill;
    for (const box of row.querySelectorAll('ul input[data-key]')) box.checked = !state.hidden.has(box.dataset.key);
  }
}

function layerHint(glError) {
  if (glError) return 'WebGL unavailable: cells are drawn from image tiles at every zoom.';
  return 'Zoomed out: image tiles. Zoomed in: every cell and edge (hover, click to inspect); from about 20×, each nucleus\'s outline. Untick a class or pair type to hide it at every zoom.';
}

class CaseOverlays {
  constructor(caseViewer) {
    this.caseViewer = caseViewer;
    this.panes = caseViewer.panes.map((pane) => new PaneOverlays(this, pane));
    this.highlightName = null;
    this._features = new Map();
    this.ready = caseViewer.ready.then(() => Promise.all(this.panes.map((p) => p.load()))).then(() => this);
    // Esc closes an open cell inspector (before the viewer's own Esc, which clears measurements).
    document.addEventListener('keydown', (event) => {
      if (event.key !== 'Escape' || event.defaultPrevented) return;
      if (event.target && /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName)) return;
      if (document.querySelector('.cv-help-overlay:not([hidden])')) return;  // Esc closes the help first
      const open = this.panes.filter((p) => p.inspectorOpen);
      if (!open.length) return;
      for (const p of open) p.closeInspector();
      event.preventDefault();
    }, true);
    document.addEventListener('click', (event) => {
      const row = event.target.closest && event.target.closest('table.attributions tr[data-feature]');
      if (!row) return;
      const name = row.dataset.feature;
      if (this.highlightName === name) this.clearHighlight();
      else this.highlightFeature(name).catch((error) => console.warn(error));
    });
    for (const row of document.querySelectorAll('table.attributions tr[data-feature]')) {
      row.classList.add('ov-clickable');
      row.setAttribute('title', 'Show the cells behind this input on the slide');
      row.tabIndex = 0;
      row.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); row.click(); }
      });
    }
  }

  _pane(index) {
    const pane = this.panes[index];
    if (!pane) throw new Error(`no pane ${index}`);
    return pane;
  }

  layers(index) {
    const pane = this._pane(index);
    return pane.layers.map((layer) => {
      const state = pane.state.get(layer.name);
      return { ...layer, visible: state.visible, opacity: state.opacity, hidden: [...state.hidden], mode: pane.mode(layer.name) };
    });
  }

  setVisible(index, name, visible) { this._pane(index).setVisible(name, visible); }

  setOpacity(index, name, opacity) { this._pane(index).setOpacity(name, opacity); }

  setFill(index, name, fill) { this._pane(index).setFill(name, fill); }

  setHidden(index, name, key, hidden) { this._pane(index).setHidden(name, key, hidden); }

  inspect(index, cellId) { return this._pane(index).inspect(cellId); }

  async feature(name) {
    if (!this._features.has(name)) this._features.set(name, getJson(`/api/features/${encodeURIComponent(name)}/`));
    try {
      return await this._features.get(name);
    } catch (error) {
      this._features.delete(name);
      throw error;
    }
  }

  /** Highlight a feature's source cells and edges on the slide of its group; resolves the masks. */
  async highlightFeature(name) {
    await this.ready;
    const feature = await this.feature(name);
    this.clearHighlight({ keepRows: true });
    this.highlightName = name;
    for (const row of document.querySelectorAll('table.attributions tr[data-feature]')) {
      const on = row.dataset.feature === name;
      row.classList.toggle('ov-selected', on);
      row.setAttribute('aria-pressed', on ? 'true' : 'false');
    }
    const pane = this.panes.find((p) => p.slide.stain === feature.group);
    if (!pane) {
      this._notice(name, feature.source_cells ? `no ${feature.group} slide in this case` : 'clinical input: nothing to show on the slides');
      return { pane: null, feature };
    }
    const masks = highlightMasks(feature, pane.layers);
    masks.pair = feature.source_cells?.pair_type || null;
    masks.feature = name;
    if (masks.empty || (!masks.classMask && !masks.partnerClassMask && !masks.pairMask) || !masks.layers.length) {
      this._notice(name, pane.layers.length ? 'no matching layer' : 'the slide has no analysis yet');
      return { pane: pane.index, feature, masks };
    }
    pane.setHighlight(masks, feature.label_text || name);
    document.dispatchEvent(new CustomEvent('caseoverlays:highlight', { detail: { feature: name, pane: pane.index } }));
    return { pane: pane.index, feature, masks: { ...masks } };
  }

  _notice(name, text) {
    const pane = this.panes[0];
    pane.banner.replaceChildren(el('span', { text: `${name}: ${text}` }));
    pane.banner.removeAttribute('hidden');
    clearTimeout(this._noticeTimer);
    this._noticeTimer = setTimeout(() => { if (!pane.highlight) pane.banner.setAttribute('hidden', ''); }, 4000);
  }

  clearHighlight({ keepRows = false } = {}) {
    this.highlightName = null;
    for (const pane of this.panes) if (pane.highlight || !pane.banner.hidden) pane.setHighlight(null);
    if (!keepRows) {
      for (const row of document.querySelectorAll('table.attributions tr.ov-selected')) {
        row.classList.remove('ov-selected');
        row.setAttribute('aria-pressed', 'false');
      }
      document.dispatchEvent(new CustomEvent('caseoverlays:highlight', { detail: { feature: null, pane: null } }));
    }
  }

  getState() {
    return {
      panes: this.panes.map((pane) => Object.fromEntries(pane.layers.map((layer) => {
        const s = pane.state.get(layer.name);
        // `fill` only when on: states saved before outlines existed compare equal.
        return [layer.name, { visible: s.visible, opacity: s.opacity, hidden: [...s.hidden], ...(s.fill ? { fill: true } : {}) }];
      }))),
      highlight: this.highlightName,
    };
  }

  /** Apply a state from getState() (e.g. the tumour board's). Never rejects: problems are logged. */
  async setState(state) {
    try {
      await this._setState(state);
    } catch (error) {
      console.warn(`overlays: setState: ${error.message || error}`);
    }
  }

  /** The tumour board's attribution list: highlight `name` (null clears). Never rejects. */
  selectAttribution(name) {
    if (!name) { this.clearHighlight(); return Promise.resolve(null); }
    if (name === this.highlightName) return Promise.resolve(null);
    return this.highlightFeature(name).catch((error) => { console.warn(`overlays: ${error.message || error}`); return null; });
  }

  async _setState(state) {
    if (!state) return;
    await this.ready;
    (state.panes || []).forEach((layers, index) => {
      const pane = this.panes[index];
      if (!pane || !layers) return;
      for (const [name, s] of Object.entries(layers)) {
        const current = pane.state.get(name);
        if (!current || !s) continue;
        if (Array.isArray(s.hidden)) current.hidden = new Set(s.hidden);
        if (typeof s.opacity === 'number') current.opacity = Math.max(0, Math.min(1, s.opacity));
        if (typeof s.visible === 'boolean') current.visible = s.visible;
        if (typeof s.fill === 'boolean') current.fill = s.fill;
        pane._syncControls(name);
        pane._apply(name);
      }
    });
    if (state.highlight && state.highlight !== this.highlightName) await this.highlightFeature(state.highlight);
    else if (!state.highlight && this.highlightName) this.clearHighlight();
  }

  /** For tests and the benchmark: what each layer of a pane is drawn with now. */
  status(index) {
    const pane = this._pane(index);
    return {
      webgl: Boolean(pane.renderer),
      glError: pane.glError,
      fetches: pane.fetchCount,
      highlight: pane.highlight ? { feature: pane.highlight.feature, classMask: pane.highlight.classMask,
        her2Mask: pane.highlight.her2Mask, partnerClassMask: pane.highlight.partnerClassMask,
        partnerHer2Mask: pane.highlight.partnerHer2Mask, pairMask: pane.highlight.pairMask,
        layers: [...pane.highlight.layers] } : null,
      hover: pane.hoverId,
      inspected: pane.selected ? pane.selected.id : null,
      inspectorSide: pane.inspectorSide || null,
      layers: Object.fromEntries(pane.layers.map((layer) => {
        const records = pane.records.get(layer.name);
        const tiles = pane.tiled.get(layer.name);
        const contours = pane.contours.get(layer.name);
        return [layer.name, { mode: pane.mode(layer.name), records: records ? records.parsed.count : null,
          drawn: pane.outlined(layer.name) ? 'outlines' : pane.mode(layer.name),
          outlines: contours ? { cells: contours.cells, segments: contours.segments, bytes: contours.bytes, ms: contours.ms, rect: contours.rect } : null,
          fill: pane.state.get(layer.name).fill,
          rect: records ? records.rect : null, tiles: tiles ? (tiles === 'pending' ? 'pending' : 'loaded') : null,
          tileUrl: tiles && tiles !== 'pending' ? pane.tiledUrl.get(layer.name) : null,
          pending: pane.fetching.has(layer.name) }];
      })),
    };
  }

  /** Pixel position (page CSS px) of a record of a layer, for tests: the first cell whose id is given, or record index. */
  recordScreenPoint(index, name, { id = null, i = 0 } = {}) {
    const pane = this._pane(index);
    const records = pane.records.get(name);
    if (!records) return null;
    let k = i;
    if (id !== null) {
      k = -1;
      for (let j = 0; j < records.parsed.count; j += 1) if (cellAt(records.parsed, j).id === id) { k = j; break; }
      if (k < 0) return null;
    }
    const cell = cellAt(records.parsed, k);
    const p = pane.imageToElementSafe ? pane.imageToElementSafe(cell) : pane.pane.imageToElement(cell);
    const box = pane.viewer.element.getBoundingClientRect();
    return { x: box.left + p.x, y: box.top + p.y, cell };
  }
}

function start(caseViewer) {
  if (window.caseOverlays || !caseViewer || !caseViewer.panes) return;
  window.caseOverlays = new CaseOverlays(caseViewer);
  window.caseOverlays.ready.then(() => document.dispatchEvent(new CustomEvent('caseoverlays:ready', { detail: window.caseOverlays })));
}

if (window.caseViewer) start(window.caseViewer);
else document.addEventListener('caseviewer:ready', (event) => start(event.detail), { once: true });
