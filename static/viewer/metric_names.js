/**
 * Readable names of the cell inspector's values: sc-MTOP per-cell graph metrics (Zhao et al.,
 * Nat Commun 2023, WSIGraph.py: the 12 columns of analysis.core.graph.graphs.GRAPH_METRICS)
 * and the nucleus morphology (analysis.core.cells.features, Morph_* / texture names).
 * The raw name stays on hover (title).
 */
export const GRAPH_METRIC_NAMES = {
  minEdgeLength: ['Shortest edge', 'µm'],
  meanEdgeLength: ['Mean edge length', 'µm'],
  Nsubgraph: ['Cells in its subgraph', ''],
  Degrees: ['Neighbours (degree)', ''],
  Coreness: ['Coreness (k-core)', ''],
  ClusteringCoefficient: ['Clustering coefficient', ''],
  Eccentricity: ['Eccentricity (hops)', ''],
  Eccentricity_normed: ['Eccentricity, normalised', ''],
  HarmonicCentrality: ['Harmonic centrality', ''],
  Closeness: ['Closeness centrality', ''],
  Betweenness: ['Betweenness centrality', ''],
  Betweenness_normed: ['Betweenness, normalised', ''],
};

export const MORPH_NAMES = {
  Morph_Area: ['Area', 'px²'],
  Morph_AreaBbox: ['Bounding-box area', 'px²'],
  Morph_CellEccentricities: ['Eccentricity', ''],
  Morph_Circularity: ['Circularity', ''],
  Morph_Elongation: ['Elongation', ''],
  Morph_Extent: ['Extent (area / box)', ''],
  Morph_MajorAxisLength: ['Major axis', 'px'],
  Morph_MinorAxisLength: ['Minor axis', 'px'],
  Morph_Perimeter: ['Perimeter', 'px'],
  Morph_Solidity: ['Solidity (area / hull)', ''],
};

/** Pair-type codes -> short readable column heads (full names on hover). */
const TYPE_SHORT = { T: 'T', S: 'S', L: 'L', N: 'N', M: 'M', Tstrong: 'Ts', Tweak: 'Tw', Tnull: 'T0', nonT: 'nT' };
const TYPE_LONG = { T: 'tumour', S: 'stroma', L: 'lymphocyte', N: 'neutrophil', M: 'macrophage', Tstrong: 'HER2-strong tumour',
  Tweak: 'HER2-weak tumour', Tnull: 'HER2-null tumour', nonT: 'non-tumour' };

export function pairHead(pair) {
  const [a, b] = String(pair).split('-');
  return {
    short: `${TYPE_SHORT[a] || a}–${TYPE_SHORT[b] || b}`,
    long: `Graph of ${TYPE_LONG[a] || a} and ${TYPE_LONG[b] || b} cells (${pair})`,
  };
}

/** [readable name, unit] of a metric or morphology key; unknown keys: de-camel-cased. */
export function metricName(key) {
  const known = GRAPH_METRIC_NAMES[key] || MORPH_NAMES[key];
  if (known) return known;
  const plain = String(key).replace(/^(Morph|Texture|Tex)_/, '').replace(/_/g, ' ')
    .replace(/([a-z])([A-Z])/g, '$1 $2');
  return [plain.charAt(0).toUpperCase() + plain.slice(1).toLowerCase(), ''];
}

/** The key of the short pair heads used by `pairs` (e.g. "T tumour · L lymphocyte"). */
export function pairKey(pairs) {
  const seen = [];
  for (const pair of pairs) for (const t of String(pair).split('-')) if (!seen.includes(t)) seen.push(t);
  return seen.map((t) => `${TYPE_SHORT[t] || t} ${TYPE_LONG[t] || t}`).join(' · ');
}
