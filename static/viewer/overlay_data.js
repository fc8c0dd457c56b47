/**
 * Pure logic of the overlay layers (no DOM, no WebGL): binary viewport records, a
 * grid index for hover/click picking, colours, feature -> highlight masks, and the
 * choice between PNG tiles and WebGL records. Tested in tests/frontend/test_overlays_unit.py.
 *
 * Record formats (docs/overlays-frontend.md, little-endian):
 *   cells / her2: 12 bytes: float32 x, float32 y, uint32 (id << 8) | (her2_code << 4) | class_code
 *   edges:        20 bytes: float32 x1, y1, x2, y2, uint32 pair_code
 */

export const CELL_RECORD_BYTES = 12;
export const EDGE_RECORD_BYTES = 20;
export const HER2_NONE = 15;
export const CLASS_KEYS = ['tumour', 'stroma', 'lymphocyte', 'neutrophil', 'macrophage', 'other'];
export const HER2_KEYS = ['strong_complete', 'strong_incomplete', 'weak_complete', 'weak_incomplete',
  'null_complete', 'null_incomplete'];
/** Records per response the server allows (above: HTTP 413, the client keeps the PNG tiles). */
export const RECORD_CAP = 500000;
/** Ask for records only when the estimate for the fetched rectangle is under this. */
export const RECORD_BUDGET = 250000;

export class RecordFormatError extends Error {}

/** Parse a cells/her2 viewport answer (ArrayBuffer) into typed views (no copy). */
export function parseCells(buffer) {
  if (buffer.byteLength % CELL_RECORD_BYTES) {
    throw new RecordFormatError(`cell records: ${buffer.byteLength} bytes is not a multiple of ${CELL_RECORD_BYTES}`);
  }
  const count = buffer.byteLength / CELL_RECORD_BYTES;
  // 12-byte records: 3 words each; the fetch buffer starts at offset 0, so word views are aligned.
  return { count, buffer, f32: new Float32Array(buffer), u32: new Uint32Array(buffer) };
}

export function parseEdges(buffer) {
  if (buffer.byteLength % EDGE_RECORD_BYTES) {
    throw new RecordFormatError(`edge records: ${buffer.byteLength} bytes is not a multiple of ${EDGE_RECORD_BYTES}`);
  }
  const count = buffer.byteLength / EDGE_RECORD_BYTES;
  return { count, buffer, f32: new Float32Array(buffer), u32: new Uint32Array(buffer) };
}

/** Decode one cell record i of parsed cells. */
export function cellAt(cells, i) {
  const packed = cells.u32[i * 3 + 2];
  return {
    x: cells.f32[i * 3],
    y: cells.f32[i * 3 + 1],
    id: packed >>> 8,
    her2Code: (packed >>> 4) & 15,
    classCode: packed & 15,
  };
}

export function packCell(id, her2Code, classCode) {
  return ((id << 8) | (her2Code << 4) | classCode) >>> 0;
}

/**
 * Uniform grid over the records' level-0 coordinates (counting sort: O(n), two
 * Int32Arrays). nearest(x, y, r) returns the index of the closest record within r.
 */
export class GridIndex {
  constructor(xs, ys, count, stride = 1, cellPx = 0) {
    this.count = count;
    this.xs = xs;
    this.ys = ys;
    this.stride = stride;
    if (!count) return;
    let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
    for (let i = 0; i < count; i += 1) {
      const x = xs[i * stride]; const y = ys[i * stride];
      if (x < x0) x0 = x; if (x > x1) x1 = x;
      if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    const area = Math.max(1, (x1 - x0) * (y1 - y0));
    // About 2 records per bucket, unless told.
    const size = cellPx > 0 ? cellPx : Math.max(1, Math.sqrt((area * 2) / count));
    this.size = size;
    this.x0 = x0; this.y0 = y0;
    this.cols = Math.max(1, Math.floor((x1 - x0) / size) + 1);
    this.rows = Math.max(1, Math.floor((y1 - y0) / size) + 1);
    const buckets = this.cols * this.rows;
    const bucketOf = new Int32Array(count);
    const starts = new Int32Array(buckets + 1);
    for (let i = 0; i < count; i += 1) {
      const c = Math.floor((xs[i * stride] - x0) / size);
      const r = Math.floor((ys[i * stride] - y0) / size);
      const b = r * this.cols + c;
      bucketOf[i] = b;
      starts[b + 1] += 1;
    }
    for (let b = 0; b < buckets; b += 1) starts[b + 1] += starts[b];
    const fill = starts.slice(0, buckets);
    const order = new Int32Array(count);
    for (let i = 0; i < count; i += 1) order[fill[bucketOf[i]]++] = i;
    this.starts = starts;
    this.order = order;
  }

  /** Index of the nearest record within `radius` of (x, y) for which accept(i) holds, or -1. */
  nearest(x, y, radius, accept = null) {
    if (!this.count) return -1;
    const { size, cols, rows, x0, y0, xs, ys, stride } = this;
    const c0 = Math.max(0, Math.floor((x - radius - x0) / size));
    const c1 = Math.min(cols - 1, Math.floor((x + radius - x0) / size));
    const r0 = Math.max(0, Math.floor((y - radius - y0) / size));
    const r1 = Math.min(rows - 1, Math.floor((y + radius - y0) / size));
    let best = -1;
    let bestD = radius * radius;
    for (let r = r0; r <= r1; r += 1) {
      for (let c = c0; c <= c1; c += 1) {
        const b = r * cols + c;
        for (let k = this.starts[b]; k < this.starts[b + 1]; k += 1) {
          const i = this.order[k];
          const dx = xs[i * stride] - x; const dy = ys[i * stride] - y;
          const d = dx * dx + dy * dy;
          if (d <= bestD && (!accept || accept(i))) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }
}

/** Build a grid index over parsed cells (x at word 0, y at word 1, stride 3 words). */
export function cellGrid(cells) {
  return new GridIndex(cells.f32, cells.f32.subarray(1), cells.count, 3);
}

/** '#RRGGBB' -> [r, g, b] in 0..1. */
export function hexToRgb(hex) {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(String(hex || '').trim());
  if (!m) return [0.6, 0.6, 0.6];
  return [parseInt(m[1], 16) / 255, parseInt(m[2], 16) / 255, parseInt(m[3], 16) / 255];
}

/** Legend -> Float32Array(16 * 4) RGBA indexed by code; hidden keys get alpha 0. */
export function legendPalette(legend, hidden = new Set()) {
  const out = new Float32Array(64);
  for (const entry of legend || []) {
    const code = Number(entry.code);
    if (!(code >= 0 && code < 16)) continue;
    const [r, g, b] = hexToRgb(entry.color);
    out.set([r, g, b, hidden.has(entry.key) ? 0 : 1], code * 4);
  }
  return out;
}

/** Pair types match in either order ("T-L" is also "L-T"). */
export function samePair(a, b) {
  if (!a || !b) return false;
  if (a === b) return true;
  const [p, q] = String(a).split('-');
  return `${q}-${p}` === b;
}

/**
 * Which records a feature's source cells are: from /api/features/<name>/ and the
 * layers of the slide. Returns {pane: 'he'|'ihc'|null, classMask, her2Mask, pairMask,
 * partnerClassMask, partnerHer2Mask, layers: [names to show]}: bit sets over codes. A cell
 * is a source cell when its class is in classMask and (her2Mask is 0 or its grade is in
 * it), or the same with the partner masks; an edge when its code is in pairMask.
 */
export function highlightMasks(feature, layers) {
  const source = feature && feature.source_cells;
  const group = feature && feature.group;
  const result = { pane: group === 'he' || group === 'ihc' ? group : null, classMask: 0, her2Mask: 0,
    partnerClassMask: 0, partnerHer2Mask: 0, pairMask: 0, layers: [], empty: !source };
  if (!source) return result;
  const codeOf = (keys, list) => {
    let mask = 0;
    for (const key of list || []) {
      const i = keys.indexOf(key);
      if (i >= 0) mask |= 1 << i;
    }
    return mask;
  };
  const cells = source.cells || {};
  const partners = source.partners || {};
  // Two selectors: the feature's cells, and (graph features) their partners; a HER2 mask
  // of 0 means "any grade".
  result.classMask = codeOf(CLASS_KEYS, cells.cls);
  result.her2Mask = codeOf(HER2_KEYS, cells.her2_class);
  result.partnerClassMask = codeOf(CLASS_KEYS, partners.cls);
  result.partnerHer2Mask = codeOf(HER2_KEYS, partners.her2_class);
  const byKind = (kind) => (layers || []).find((layer) => layer.kind === kind);
  if ((result.classMask || result.partnerClassMask) && byKind('cells')) result.layers.push(byKind('cells').name);
  if ((result.her2Mask || result.partnerHer2Mask) && byKind('her2')) result.layers.push(byKind('her2').name);
  const edges = byKind('edges');
  if (source.pair_type && edges) {
    for (const entry of edges.legend || []) {
      if (samePair(entry.key, source.pair_type)) result.pairMask |= 1 << Number(entry.code);
    }
    if (result.pairMask) result.layers.push(edges.name);
  }
  return result;
}

/** Total records a layer has (sum of its legend counts), or null when unknown. */
export function layerTotal(layer) {
  let total = 0;
  let known = false;
  for (const entry of layer.legend || []) {
    if (Number.isFinite(entry.count)) { total += entry.count; known = true; }
  }
  return known ? total : null;
}

/**
 * Should the client ask for records of `rect` (level-0 px) now? Uses the layer's
 * count over the slide area for an estimate, and remembers the smallest area that
 * got a 413 (`refusedArea`).
 */
export function wantRecords({ layer, rect, slideWidth, slideHeight, refusedArea = Infinity }) {
  const area = Math.max(0, rect.width) * Math.max(0, rect.height);
  if (!area) return false;
  if (area >= refusedArea) return false;
  const total = layerTotal(layer);
  if (total === null || !slideWidth || !slideHeight) return area <= 16e6;
  const estimate = total * Math.min(1, area / (slideWidth * slideHeight));
  return estimate <= RECORD_BUDGET;
}

/** Axis-aligned level-0 rectangle around the given points, grown by `margin` (fraction). */
export function boundsOf(points, margin = 0) {
  let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
  for (const p of points) {
    x0 = Math.min(x0, p.x); x1 = Math.max(x1, p.x);
    y0 = Math.min(y0, p.y); y1 = Math.max(y1, p.y);
  }
  const mx = (x1 - x0) * margin; const my = (y1 - y0) * margin;
  return { x: x0 - mx, y: y0 - my, width: x1 - x0 + 2 * mx, height: y1 - y0 + 2 * my };
}

export function rectContains(outer, inner) {
  return inner.x >= outer.x && inner.y >= outer.y && inner.x + inner.width <= outer.x + outer.width
    && inner.y + inner.height <= outer.y + outer.height;
}

/** Round a fetch rectangle outwards to whole pixels, clipped to the slide. */
export function clipRect(rect, width, height) {
  const x0 = Math.max(0, Math.floor(rect.x));
  const y0 = Math.max(0, Math.floor(rect.y));
  const x1 = Math.min(width || Infinity, Math.ceil(rect.x + rect.width));
  const y1 = Math.min(height || Infinity, Math.ceil(rect.y + rect.height));
  return { x: x0, y: y0, width: Math.max(0, x1 - x0), height: Math.max(0, y1 - y0) };
}

/** Screen diameter of a cell point: ~9 um nucleus, clamped to 2..40 px. */
export function pointSizePx({ zoom, mpp }) {
  const px = mpp ? (9 / mpp) * zoom : 36 * zoom;
  return Math.max(2, Math.min(40, px));
}

/**
 * Nucleus outlines (zoomed far in). Contour records (docs/overlays.md): per cell a 16-byte
 * head, float32 ox, oy (origin = rounded centroid), uint32 packed (as the cell records),
 * uint32 n, then n x (int16 dx, int16 dy). parseContours expands them into one 28-byte
 * segment per contour edge for WebGL: float32 x1, y1, x2, y2, ox, oy, uint32 packed.
 */
export const SEGMENT_BYTES = 28;
/** Outlines replace the discs once a nucleus (~9 um) spans this many screen px (about 20x). */
export const OUTLINE_MIN_PX = 18;

export function parseContours(buffer) {
  if (buffer.byteLength % 4) throw new RecordFormatError(`contour records: ${buffer.byteLength} bytes is not a multiple of 4`);
  const words = new Uint32Array(buffer);
  const floats = new Float32Array(buffer);
  const shorts = new Int16Array(buffer);
  let cells = 0; let segments = 0;
  for (let i = 0; i < words.length;) {
    const n = words[i + 3];
    if (i + 4 + n > words.length) throw new RecordFormatError('contour records: truncated');
    cells += 1; segments += n; i += 4 + n;
  }
  const out = new ArrayBuffer(segments * SEGMENT_BYTES);
  const f = new Float32Array(out);
  const u = new Uint32Array(out);
  let k = 0;
  for (let i = 0; i < words.length;) {
    const ox = floats[i]; const oy = floats[i + 1]; const packed = words[i + 2]; const n = words[i + 3];
    const base = (i + 4) * 2;  // index in int16 units
    for (let j = 0; j < n; j += 1) {
      const a = base + 2 * j; const b = base + 2 * ((j + 1) % n);
      f[k] = ox + shorts[a]; f[k + 1] = oy + shorts[a + 1];
      f[k + 2] = ox + shorts[b]; f[k + 3] = oy + shorts[b + 1];
      f[k + 4] = ox; f[k + 5] = oy; u[k + 6] = packed;
      k += 7;
    }
    i += 4 + n;
  }
  return { cells, segments, buffer: out, f32: f, u32: u };
}

/** Draw outlines (not discs) at this zoom? */
export function outlineZoom({ zoom, mpp }) {
  const px = mpp ? (9 / mpp) * zoom : 36 * zoom;
  return px >= OUTLINE_MIN_PX;
}
