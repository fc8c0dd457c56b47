/**
 * Synced viewing through the automatic registration's non-rigid field (issue 17), and the
 * Align-mode buttons that run it ("Auto") and restore it ("Reset to automatic").
 *
 * The server (GET /api/cases/<id>/alignment/field/, analysis/core/slides/registration.py)
 * sends two float16 grids in H&E (fixed) level-0 px, node (r, c) at (c, r) * spacing_px:
 *
 *     H&E -> IHC:  q = S(p + u(p))
 *     IHC -> H&E:  p = p' + v(p'),  p' = S^-1(q)
 *
 * with S the similarity of ./alignment.js. Lookups are bilinear and clamped at the grid's
 * edges, exactly as the server's `_bilinear`, so a point maps to the same place here and in
 * `map_points_fixed_to_moving` (float64 both sides, from the same float16 values).
 *
 * The field belongs to the automatic similarity it was computed with: it is used only while the
 * viewer's alignment equals that similarity and Align mode is off (a hand-made alignment is a
 * similarity alone). Views are linked through the field at their centre; zoom and rotation come
 * from the similarity (the field is smooth: its local rotation and stretch are tiny).
 *
 * Also a linked cursor: the point under the mouse in one pane is marked in the other.
 */

import { applyAlignment, invertAlignmentPoint, normaliseAlignment } from './alignment.js';

/** IEEE half -> number. */
function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** base64 of little-endian float16 -> Float64Array. */
export function decodeFloat16Base64(text) {
  const binary = atob(text);
  const out = new Float64Array(binary.length / 2);
  for (let i = 0; i < out.length; i += 1) {
    out[i] = halfToFloat(binary.charCodeAt(2 * i) | (binary.charCodeAt(2 * i + 1) << 8));
  }
  return out;
}

export class RegistrationFieldError extends Error {
  constructor(message) {
    super(message);
    this.name = 'RegistrationFieldError';
  }
}

/** The displacement field of one registration (parsed server JSON). */
export class DisplacementField {
  constructor(data) {
    if (!data || data.version !== 1 || data.dtype !== '<f2' || !Array.isArray(data.shape)) {
      throw new RegistrationFieldError('unsupported registration field format');
    }
    const [ny, nx] = data.shape.map(Number);
    this.ny = ny;
    this.nx = nx;
    this.spacing = Number(data.spacing_px);
    this.forward = decodeFloat16Base64(data.forward);
    this.inverse = decodeFloat16Base64(data.inverse);
    if (this.forward.length !== ny * nx * 2 || this.inverse.length !== ny * nx * 2 || !(this.spacing > 0)) {
      throw new RegistrationFieldError('registration field grids do not match their shape');
    }
    this.similarity = data.similarity ? normaliseAlignment(data.similarity) : null;
  }

  /** Bilinear displacement {x, y} at a fixed level-0 point (clamped at the edges, as the server). */
  displacement(point, { inverse = false } = {}) {
    const grid = inverse ? this.inverse : this.forward;
    const { ny, nx } = this;
    const r = Math.min(Math.max(point.y / this.spacing, 0), ny - 1);
    const c = Math.min(Math.max(point.x / this.spacing, 0), nx - 1);
    const r0 = Math.min(Math.max(Math.floor(r), 0), Math.max(ny - 2, 0));
    const c0 = Math.min(Math.max(Math.floor(c), 0), Math.max(nx - 2, 0));
    const r1 = Math.min(r0 + 1, ny - 1);
    const c1 = Math.min(c0 + 1, nx - 1);
    const fr = r - r0;
    const fc = c - c0;
    const at = (row, col, k) => grid[(row * nx + col) * 2 + k];
    const mix = (k) => (1 - fr) * (1 - fc) * at(r0, c0, k) + (1 - fr) * fc * at(r0, c1, k)
      + fr * (1 - fc) * at(r1, c0, k) + fr * fc * at(r1, c1, k);
    return { x: mix(0), y: mix(1) };
  }

  /** H&E level-0 -> IHC level-0 through the field, then `alignment`. */
  toMoving(alignment, point) {
    const u = this.displacement(point);
    return applyAlignment(alignment, { x: point.x + u.x, y: point.y + u.y });
  }

  /** IHC level-0 -> H&E level-0 (inverse of toMoving). */
  toFixed(alignment, point) {
    const p = invertAlignmentPoint(alignment, point);
    const v = this.displacement(p, { inverse: true });
    return { x: p.x + v.x, y: p.y + v.y };
  }
}

function sameAlignment(a, b) {
  if (!a || !b) return false;
  const dRot = Math.abs(((a.rotation - b.rotation) % 360 + 540) % 360 - 180);
  return Math.abs(a.offset_x - b.offset_x) < 0.01 && Math.abs(a.offset_y - b.offset_y) < 0.01
    && dRot < 1e-5 && Math.abs(a.scale / b.scale - 1) < 1e-8;
}

function makeButton(label, text, className) {
  const node = document.createElement('button');
  node.type = 'button';
  node.className = `cv-btn ${className}`;
  node.textContent = text;
  node.title = label;
  node.setAttribute('aria-label', label);
  return node;
}

/** Wires the field into a CaseViewer (static/viewer/case_viewer.js) as `caseViewer.registration`. */
export class RegistrationSync {
  constructor(caseViewer) {
    this.viewer = caseViewer;
    const config = caseViewer.config.alignment || {};
    this.fieldUrl = config.field_url || null;
    this.autoUrl = config.auto_url || null;
    this.alignmentUrl = config.url || null;
    this.hasAutomatic = Boolean(config.has_automatic);
    this.source = config.source || 'default';
    this.field = null;
    this.loaded = this.fieldUrl ? this.load(this.fieldUrl) : Promise.resolve(null);
    document.addEventListener('caseviewer:alignment', () => {
      // Saved by hand: the server no longer applies the field to this alignment.
      this.field = null;
      this.source = 'manual';
      this._updateStatus();
    });
    if (caseViewer.panes.length > 1) {
      this._buildButtons();
      this._bindCursor();
    }
  }

  /** True while views and points are linked through the field. */
  get active() {
    const v = this.viewer;
    return Boolean(this.field && !v.alignMode && this.field.similarity && sameAlignment(v._alignment, this.field.similarity));
  }

  async load(url) {
    try {
      const response = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (!response.ok) throw new RegistrationFieldError(`HTTP ${response.status}`);
      this.field = new DisplacementField(await response.json());
    } catch (error) {
      this.field = null;
      this.viewer.toast(`Non-rigid registration not used: ${error.message}`, { error: true });
    }
    this._updateStatus();
    this._resync();
    return this.field;
  }

  _resync() {
    const reference = this.viewer.panes[0];
    if (reference && reference.opened && this.viewer.syncEnabled) this.viewer._propagate(reference, reference.getView());
  }

  // ----- mapping (pane 0 is the H&E reference, pane 1 the IHC)

  /** Map a level-0 point of pane `from` to pane `to` (through the field when active). */
  mapPoint(from, to, point) {
    if (from === to) return { ...point };
    const alignment = this.viewer._alignment;
    const useField = this.active;
    let reference = point;
    if (from !== 0) reference = useField && from === 1 ? this.field.toFixed(alignment, point) : invertAlignmentPoint(this.viewer.transformFor(from), point);
    if (to === 0) return reference;
    return useField && to === 1 ? this.field.toMoving(alignment, reference) : applyAlignment(this.viewer.transformFor(to), reference);
  }

  /** The IHC view showing the reference view's centre through the field, or null (no field). */
  movingView(index, alignment, view) {
    if (index !== 1 || !this.active) return null;
    return { center: this.field.toMoving(alignment, view.center), zoom: view.zoom / alignment.scale, rotation: view.rotation - alignment.rotation };
  }

  referenceView(index, alignment, view) {
    if (index !== 1 || !this.active) return null;
    return { center: this.field.toFixed(alignment, view.center), zoom: view.zoom * alignment.scale, rotation: view.rotation + alignment.rotation };
  }

  // ----- Align-mode buttons

  _buildButtons() {
    const v = this.viewer;
    const group = v.toolbar && v.toolbar.querySelector('[aria-label="Alignment"]');
    this.status = document.createElement('span');
    this.status.className = 'cv-registration-status';
    this.status.setAttribute('aria-live', 'polite');
    this.status.style.cssText = 'font-size:12px;opacity:.8;margin-left:4px;white-space:nowrap';
    if (!group || !this.autoUrl) {
      if (v.toolbar) v.toolbar.append(this.status);
      this._updateStatus();
      return;
    }
    this.autoButton = makeButton('Register the IHC to the H&E automatically (rigid, then non-rigid)', 'Auto', 'cv-align-auto cv-align-only');
    this.restoreButton = makeButton('Reset to the automatic registration', 'Reset to automatic', 'cv-align-restore cv-align-only');
    this.autoButton.addEventListener('click', () => this.runAutomatic());
    this.restoreButton.addEventListener('click', () => this.restoreAutomatic());
    const readout = group.querySelector('.cv-align-readout');
    group.insertBefore(this.autoButton, readout);
    group.insertBefore(this.restoreButton, readout);
    group.append(this.status);
    this._updateStatus();
  }

  _updateStatus() {
    if (this.restoreButton) this.restoreButton.disabled = !this.hasAutomatic;
    if (!this.status) return;
    let text = '';
    if (this.field) text = 'registered: non-rigid';
    else if (this.source === 'automatic') text = 'registered: similarity';
    else if (this.source === 'manual') text = 'aligned by hand';
    this.status.textContent = text;
    this.status.dataset.source = this.field ? 'field' : this.source;
  }

  _csrf() {
    return this.viewer.csrfToken || '';
  }

  async _post(url) {
    const response = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'X-CSRFToken': this._csrf() },
    });
    let body = null;
    try { body = await response.json(); } catch (_) { /* no JSON body */ }
    if (!response.ok) throw new RegistrationFieldError((body && body.detail) || `HTTP ${response.status}`);
    return body;
  }

  /** Queue the registration, follow its job, then show its result (or why it failed). */
  async runAutomatic() {
    let job;
    try {
      job = await this._post(this.autoUrl);
    } catch (error) {
      this.viewer.toast(`Automatic registration not started: ${error.message}`, { error: true });
      return null;
    }
    this.autoButton.disabled = true;
    this.viewer.toast(`Automatic registration running (job #${job.id}); the current alignment stays until it succeeds.`);
    try {
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const response = await fetch(`/api/jobs/${job.id}/`, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
        if (!response.ok) throw new RegistrationFieldError(`job #${job.id}: HTTP ${response.status}`);
        job = await response.json();
        if (this.status) this.status.textContent = `registering\u2026 ${Math.round(100 * (job.progress || 0))}%`;
        if (!['queued', 'running'].includes(job.status)) break;
      }
    } catch (error) {
      this.viewer.toast(`Automatic registration: ${error.message}`, { error: true });
      this._updateStatus();
      return null;
    } finally {
      this.autoButton.disabled = false;
    }
    if (job.status !== 'succeeded') {
      this.viewer.toast(`Automatic registration failed: ${job.error || job.status}`, { error: true, timeoutMs: 15000 });
      this._updateStatus();
      return job;
    }
    await this._applyServerAlignment();
    this.viewer.toast(job.result && job.result.applied === false
      ? 'Automatic registration stored; the alignment set by hand meanwhile is kept (Reset to automatic applies it).'
      : 'Automatic registration applied.');
    return job;
  }

  async restoreAutomatic() {
    try {
      await this._post(`${this.autoUrl}reset/`);
    } catch (error) {
      this.viewer.toast(`Not reset: ${error.message}`, { error: true });
      return;
    }
    await this._applyServerAlignment();
    this.viewer.toast('Alignment reset to the automatic registration.');
  }

  /** Take the server's alignment (and field) as the saved one; leave Align mode without saving. */
  async _applyServerAlignment() {
    const response = await fetch(this.alignmentUrl, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    const body = await response.json();
    const alignment = normaliseAlignment(body);
    const v = this.viewer;
    this.source = body.source;
    this.hasAutomatic = Boolean(body.automatic);
    this.field = null;
    if (v.alignMode) v._leaveAlignMode();
    v.savedAlignment = { ...alignment };
    v.setAlignment(alignment);
    if (body.field_url) await this.load(body.field_url);
    else this._updateStatus();
  }

  // ----- linked cursor

  _bindCursor() {
    this.markers = this.viewer.panes.map((pane) => {
      const marker = document.createElement('div');
      marker.className = 'cv-linked-cursor';
      marker.hidden = true;
      marker.setAttribute('aria-hidden', 'true');
      marker.style.cssText = 'position:absolute;width:22px;height:22px;margin:-11px 0 0 -11px;pointer-events:none;'
        + 'border:2px solid #fff;border-radius:50%;box-shadow:0 0 0 1px #000,inset 0 0 0 1px #000;z-index:5';
      pane.overlayRoot.append(marker);
      return marker;
    });
    for (const pane of this.viewer.panes) {
      pane.osdElement.addEventListener('pointermove', (event) => {
        if (!pane.opened) return;
        const rect = pane.osdElement.getBoundingClientRect();
        this.showCursor(pane.index, pane.elementToImage({ x: event.clientX - rect.left, y: event.clientY - rect.top }));
      });
      pane.osdElement.addEventListener('pointerleave', () => this.hideCursor());
    }
  }

  /** Mark, in every other pane, the tissue under `point` (level-0 px of pane `from`). */
  showCursor(from, point) {
    this.viewer.panes.forEach((pane, index) => {
      const marker = this.markers[index];
      if (index === from || !pane.opened) {
        marker.hidden = true;
        return;
      }
      const mapped = this.mapPoint(from, index, point);
      const at = pane.imageToElement(mapped);
      marker.style.left = `${at.x}px`;
      marker.style.top = `${at.y}px`;
      marker.dataset.x = String(mapped.x);
      marker.dataset.y = String(mapped.y);
      marker.hidden = false;
    });
  }

  hideCursor() {
    for (const marker of this.markers || []) marker.hidden = true;
  }
}
