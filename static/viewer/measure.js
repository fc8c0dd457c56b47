/**
 * Lengths for the scale bar and the ruler (pure functions, no DOM).
 *
 * Microscope convention: lengths below 1 mm in micrometres, from 1 mm up in
 * millimetres. Scale-bar lengths are "round": 1, 2 or 5 times a power of ten
 * (… 10, 20, 50, 100, 200, 500 um, 1, 2, 5 mm …), as in most slide viewers.
 */

export const MICRO = '\u00b5m';

/** Round lengths in um from 0.1 um to 100 mm, ascending. */
export const ROUND_LENGTHS_UM = (() => {
  const lengths = [];
  for (let exponent = -1; exponent <= 5; exponent += 1) {
    for (const mantissa of [1, 2, 5]) {
      lengths.push(Number((mantissa * 10 ** exponent).toPrecision(3)));
    }
  }
  return lengths;
})();

/** "200 µm", "1 mm", "2.5 mm", "0.5 µm": trims trailing zeros. */
export function formatMicrometres(lengthUm) {
  if (lengthUm >= 1000) {
    return `${trimNumber(lengthUm / 1000, 3)} mm`;
  }
  return `${trimNumber(lengthUm, 3)} ${MICRO}`;
}

function trimNumber(value, significant) {
  return String(Number(value.toPrecision(significant)));
}

/**
 * Choose the scale bar: the longest round length whose bar fits maxWidthPx.
 *
 * @param {{umPerScreenPixel: number, maxWidthPx?: number}} args
 * @returns {{lengthUm: number, widthPx: number, label: string} | null}
 *   null when the scale is unknown or not positive.
 */
export function chooseScaleBar({ umPerScreenPixel, maxWidthPx = 150 }) {
  if (!(umPerScreenPixel > 0) || !Number.isFinite(umPerScreenPixel)) return null;
  let chosen = ROUND_LENGTHS_UM[0];
  for (const length of ROUND_LENGTHS_UM) {
    if (length / umPerScreenPixel <= maxWidthPx) chosen = length;
  }
  return { lengthUm: chosen, widthPx: chosen / umPerScreenPixel, label: formatMicrometres(chosen) };
}

/**
 * Ruler label for a distance measured in level-0 pixels.
 * With mpp known: um (1 decimal below 100 um) or mm; else whole pixels.
 */
export function formatDistance({ distancePx, mpp }) {
  if (Number(mpp) > 0) {
    const um = distancePx * Number(mpp);
    if (um >= 1000) return `${(um / 1000).toFixed(um >= 10000 ? 1 : 2)} mm`;
    if (um >= 100) return `${Math.round(um)} ${MICRO}`;
    return `${um.toFixed(1)} ${MICRO}`;
  }
  return `${Math.round(distancePx)} px`;
}
