/**
 * Alignment of a second slide (e.g. HER2 IHC) to the reference slide (H&E).
 *
 * Definition (the server stores exactly these four numbers):
 *
 *     p_ihc = scale * R(rotation) * p_he + (offset_x, offset_y)
 *
 * p_he in H&E level-0 pixels, p_ihc in IHC level-0 pixels, both in screen
 * orientation (x right, y down). R(rotation) turns by `rotation` degrees
 * CLOCKWISE on screen, which with y pointing down is the usual matrix
 *
 *     R(t) = [[cos t, -sin t],
 *             [sin t,  cos t]]
 *
 * Default (no saved alignment): offset 0, rotation 0, scale = mpp_he / mpp_ihc
 * when both mpp are known (same physical size), else 1.
 *
 * A "view" is {center: {x, y} in level-0 px of that slide, zoom: screen px per
 * level-0 px, rotation: viewport degrees clockwise}. Views are linked so that
 * the same tissue point stays under the centre, drawn at the same size and
 * orientation:
 *
 *     center_ihc   = T(center_he)
 *     zoom_ihc     = zoom_he / scale
 *     rotation_ihc = rotation_he - alignment.rotation
 *
 * With the default scale this keeps the same physical scale (um per screen
 * pixel) on both sides: mpp_ihc / zoom_ihc = mpp_he / zoom_he.
 *
 * Pure functions only (no DOM, no OpenSeadragon) so they are easy to test.
 */

/** @typedef {{x: number, y: number}} Point */
/** @typedef {{offset_x: number, offset_y: number, rotation: number, scale: number}} Alignment */
/** @typedef {{center: Point, zoom: number, rotation: number}} View */

export class AlignmentError extends Error {
  constructor(message) {
    super(message);
    this.name = 'AlignmentError';
  }
}

const DEG = Math.PI / 180;

function finite(value, name) {
  const number = Number(value);
  if (!Number.isFinite(number)) {
    throw new AlignmentError(`alignment ${name} must be a finite number, got ${JSON.stringify(value)}`);
  }
  return number;
}

/** Validate and normalise an alignment-like object into plain numbers. */
export function normaliseAlignment(alignment) {
  if (alignment === null || typeof alignment !== 'object') {
    throw new AlignmentError('alignment must be an object with offset_x, offset_y, rotation, scale');
  }
  const scale = finite(alignment.scale, 'scale');
  if (!(scale > 0)) {
    throw new AlignmentError(`alignment scale must be > 0, got ${scale}`);
  }
  return {
    offset_x: finite(alignment.offset_x, 'offset_x'),
    offset_y: finite(alignment.offset_y, 'offset_y'),
    rotation: normaliseDegrees(finite(alignment.rotation, 'rotation')),
    scale,
  };
}

/** Degrees wrapped into (-180, 180]. */
export function normaliseDegrees(degrees) {
  let d = ((degrees % 360) + 360) % 360;
  if (d > 180) d -= 360;
  return d;
}

/** Default alignment: identity, scaled by the mpp ratio when both are known. */
export function defaultAlignment({ mppReference = null, mppMoving = null } = {}) {
  const known = Number(mppReference) > 0 && Number(mppMoving) > 0;
  return { offset_x: 0, offset_y: 0, rotation: 0, scale: known ? Number(mppReference) / Number(mppMoving) : 1 };
}

/** p_he -> p_ihc. */
export function applyAlignment(alignment, point) {
  const { offset_x, offset_y, rotation, scale } = alignment;
  const c = Math.cos(rotation * DEG);
  const s = Math.sin(rotation * DEG);
  return {
    x: scale * (c * point.x - s * point.y) + offset_x,
    y: scale * (s * point.x + c * point.y) + offset_y,
  };
}

/** p_ihc -> p_he (exact inverse of applyAlignment). */
export function invertAlignmentPoint(alignment, point) {
  const { offset_x, offset_y, rotation, scale } = alignment;
  const c = Math.cos(rotation * DEG);
  const s = Math.sin(rotation * DEG);
  const dx = (point.x - offset_x) / scale;
  const dy = (point.y - offset_y) / scale;
  // R(-t) = R(t)^T
  return { x: c * dx + s * dy, y: -s * dx + c * dy };
}

/** The moving slide's view that shows the same tissue as the reference view. */
export function movingViewFromReference(alignment, view) {
  return {
    center: applyAlignment(alignment, view.center),
    zoom: view.zoom / alignment.scale,
    rotation: view.rotation - alignment.rotation,
  };
}

/** The reference view that shows the same tissue as the moving slide's view. */
export function referenceViewFromMoving(alignment, view) {
  return {
    center: invertAlignmentPoint(alignment, view.center),
    zoom: view.zoom * alignment.scale,
    rotation: view.rotation + alignment.rotation,
  };
}

/**
 * The alignment under which the two given views show the same tissue
 * (inverse of movingViewFromReference): what Align mode saves.
 */
export function alignmentFromViews(referenceView, movingView) {
  if (!(referenceView.zoom > 0) || !(movingView.zoom > 0)) {
    throw new AlignmentError('views must have a positive zoom to derive an alignment');
  }
  const rotation = normaliseDegrees(referenceView.rotation - movingView.rotation);
  const scale = referenceView.zoom / movingView.zoom;
  const turned = applyAlignment({ offset_x: 0, offset_y: 0, rotation, scale }, referenceView.center);
  return {
    offset_x: movingView.center.x - turned.x,
    offset_y: movingView.center.y - turned.y,
    rotation,
    scale,
  };
}

/** True when two views agree within a relative tolerance (used to break sync loops). */
export function viewsClose(a, b, { tolerancePx = 0.05 } = {}) {
  if (!a || !b) return false;
  // Centre tolerance in screen pixels, so it means the same at every zoom.
  const dx = (a.center.x - b.center.x) * a.zoom;
  const dy = (a.center.y - b.center.y) * a.zoom;
  const zoomRatio = a.zoom / b.zoom;
  const dRot = Math.abs(normaliseDegrees(a.rotation - b.rotation));
  return Math.hypot(dx, dy) <= tolerancePx && Math.abs(zoomRatio - 1) <= 1e-6 && dRot <= 1e-6;
}
