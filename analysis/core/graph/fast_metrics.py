"""sc-MTOP hop-based per-cell graph metrics in one breadth-first sweep per source (numba).

Replaces the four all-sources igraph sweeps that ``graphs._metrics_from_igraph`` used to run
(betweenness, harmonic centrality, closeness, eccentricity: 4 x O(n m), one core) with ONE
sweep per source that computes all four, sources spread over all cores, and gives the same
doubles to the last bit as python-igraph 1.0.0 (C core 1.0.0).

Algorithm: Brandes, "A faster algorithm for betweenness centrality", J. Math. Sociol.
25(2):163-177, 2001 (unweighted BFS, path counts, dependency back-propagation). Closeness,
harmonic centrality and eccentricity are igraph's definitions (``igraph_closeness`` with
normalized=True, ``igraph_harmonic_centrality`` with normalized=False,
``igraph_eccentricity``), read off the same BFS. Bit equality comes from replaying igraph's
floating-point operations in igraph's order (src/centrality/betweenness.c ``sspf`` and
``igraph_betweenness_cutoff``, src/centrality/closeness.c):

- neighbours in ascending vertex id (``igraph_adjlist_init``, mode ALL, sorted lists), a
  FIFO queue from the source;
- path counts ``nrgeo[w] += nrgeo[v]`` as doubles in BFS order;
- dependencies: vertices taken back in reverse BFS order, ``coeff = (1 + delta[w]) /
  nrgeo[w]``, ``delta[v] += nrgeo[v] * coeff`` for every parent v (the order within one
  w's parent list does not matter: each parent is its own accumulator; what matters, the
  order of the w's, is kept);
- ``res[w] += delta[w]`` (w != source) with the sources in ASCENDING id order, then
  ``res *= 0.5`` (undirected, not normalised). The sources are spread over threads in
  blocks; each source's dependencies go to its own row of a block buffer and the rows are
  added to ``res`` in ascending source order, so the per-vertex sum order is igraph's
  exactly;
- harmonic: ``sum 1.0 / d`` in BFS pop order, source excluded; closeness: ``(reached - 1)
  / sum d``, NaN when the sum is 0 (isolated); eccentricity: the largest hop distance.

No fastmath: numba/LLVM does not contract a*b+c into an FMA without it, and the igraph
wheel is built for baseline x86-64 (no FMA). tests/analysis/core/graph/test_fast_metrics.py
checks every value bit for bit against igraph on random graphs, so an igraph or numba
change in arithmetic fails loudly.

Kernels are compiled on first use and cached (``cache=True``, next to this file; set
NUMBA_CACHE_DIR when the install is read-only). Django-free; numpy and numba only (igraph
stays for degree, coreness and clustering, which are linear-time).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

__all__ = ["csr_from_edges", "sweep_metrics", "hop_metrics", "metrics_from_igraph"]


def csr_from_edges(n: int, su: np.ndarray, sv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected CSR adjacency with every neighbour list sorted ascending (igraph's order)."""
    su = np.asarray(su, dtype=np.int64)
    sv = np.asarray(sv, dtype=np.int64)
    a = np.concatenate([su, sv])
    b = np.concatenate([sv, su])
    keep = a != b  # igraph: IGRAPH_NO_LOOPS in betweenness (no loops occur in sc-MTOP graphs)
    a, b = a[keep], b[keep]
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(a, minlength=n), out=indptr[1:])
    return indptr, b.astype(np.int32)


@njit(cache=True, nogil=True)
def _one_source(s, indptr, indices, dist, sigma, delta, queue, parents, n_parents, inverse, out_vertex, out_value):
    """BFS + Brandes back-propagation from s; returns (reached, ecc, sum_d, harmonic).

    The forward pass records each vertex's BFS parents (in `parents`, at the vertex's own
    CSR slots), so the backward pass visits parents only instead of testing every
    neighbour's level. Path counts are whole numbers (exact in doubles whatever the order);
    the dependencies are added in igraph's order (children in reverse BFS order).
    """
    queue[0] = s
    dist[s] = 0
    sigma[s] = 1.0
    head = 0
    tail = 1
    sum_d = 0
    harmonic = 0.0
    while head < tail:
        v = queue[head]
        head += 1
        dv = dist[v]
        if v != s:
            harmonic += inverse[dv]  # = 1.0 / dv, the same double, looked up
            sum_d += dv
        nd = dv + 1
        sv = sigma[v]
        for e in range(indptr[v], indptr[v + 1]):
            w = indices[e]
            dw = dist[w]
            if dw < 0:
                dist[w] = nd
                queue[tail] = w
                tail += 1
                sigma[w] = sv
                parents[indptr[w]] = v
                n_parents[w] = 1
            elif dw == nd:
                sigma[w] += sv
                parents[indptr[w] + n_parents[w]] = v
                n_parents[w] += 1
    ecc = dist[queue[tail - 1]]
    # Brandes dependencies, vertices in reverse BFS order (igraph's stack).
    for k in range(tail - 1, -1, -1):
        w = queue[k]
        coeff = (1.0 + delta[w]) / sigma[w]
        first = indptr[w]
        for e in range(first, first + n_parents[w]):
            v = parents[e]
            delta[v] += sigma[v] * coeff
        out_vertex[k] = w
        out_value[k] = delta[w]
        # w is never read again in this sweep (only its parents are, and they come later).
        dist[w] = -1
        sigma[w] = 0.0
        delta[w] = 0.0
        n_parents[w] = 0
    return tail, ecc, sum_d, harmonic


@njit(cache=True, parallel=True)
def _sweep(indptr, indices, n_threads, block):
    n = indptr.size - 1
    betweenness = np.zeros(n, dtype=np.float64)
    harmonic = np.zeros(n, dtype=np.float64)
    closeness = np.empty(n, dtype=np.float64)
    eccentricity = np.zeros(n, dtype=np.float64)
    width = max(n, 1)
    dist = np.full((n_threads, width), -1, dtype=np.int32)
    sigma = np.zeros((n_threads, width), dtype=np.float64)
    delta = np.zeros((n_threads, width), dtype=np.float64)
    queue = np.empty((n_threads, width), dtype=np.int32)
    parents = np.empty((n_threads, max(indices.size, 1)), dtype=np.int32)
    n_parents = np.zeros((n_threads, width), dtype=np.int32)
    inverse = np.empty(width + 1, dtype=np.float64)
    inverse[0] = 0.0
    for d in range(1, width + 1):
        inverse[d] = 1.0 / d
    buf_vertex = np.empty((block, width), dtype=np.int32)
    buf_value = np.empty((block, width), dtype=np.float64)
    buf_len = np.zeros(block, dtype=np.int64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        count = stop - start
        for t in prange(n_threads):
            for j in range(t, count, n_threads):
                s = start + j
                reached, ecc, sum_d, harm = _one_source(
                    s, indptr, indices, dist[t], sigma[t], delta[t], queue[t], parents[t], n_parents[t], inverse,
                    buf_vertex[j], buf_value[j],
                )
                buf_len[j] = reached
                eccentricity[s] = ecc
                harmonic[s] = harm
                if sum_d == 0:
                    closeness[s] = np.nan
                else:
                    closeness[s] = (reached - 1) / float(sum_d)
        # igraph's order: sources ascending; within one source the order is immaterial.
        for j in range(count):
            s = start + j
            bv = buf_vertex[j]
            bx = buf_value[j]
            for k in range(buf_len[j]):
                w = bv[k]
                if w != s:
                    betweenness[w] += bx[k]
    for i in range(n):
        betweenness[i] *= 0.5
    return betweenness, harmonic, closeness, eccentricity


def sweep_metrics(
    indptr: np.ndarray, indices: np.ndarray, *, n_threads: int | None = None, block: int | None = None
) -> dict[str, np.ndarray]:
    """Raw igraph-equal values on a CSR graph (sorted neighbour lists, no loops).

    Returns betweenness (igraph ``betweenness(directed=False)``), harmonic (igraph
    ``harmonic_centrality(normalized=False)``), closeness (``closeness(normalized=True)``)
    and eccentricity (``eccentricity()``), float64 per vertex.
    """
    n = int(indptr.size - 1)
    if n_threads is None:
        n_threads = numba.get_num_threads()
    n_threads = max(1, min(int(n_threads), max(n, 1)))
    if block is None:
        # Buffer rows of n entries (12 bytes each): keep the block buffer under ~64 MB.
        block = int(max(n_threads, min(64 * n_threads, (64 << 20) // (12 * max(n, 1)))))
    block = max(1, min(block, max(n, 1)))
    bc, harm, close, ecc = _sweep(
        np.ascontiguousarray(indptr, dtype=np.int64), np.ascontiguousarray(indices, dtype=np.int32), n_threads, block
    )
    return {"betweenness": bc, "harmonic": harm, "closeness": close, "eccentricity": ecc}


def hop_metrics(
    *, n: int, su: np.ndarray, sv: np.ndarray, component_size: np.ndarray, n_threads: int | None = None
) -> dict[str, np.ndarray]:
    """The four all-pairs columns of ``graphs._metrics_from_igraph``.

    Same expressions, same order of numpy operations as there, on the sweep's raw values:
    Eccentricity, Eccentricity_normed, HarmonicCentrality, Closeness, Betweenness,
    Betweenness_normed.
    """
    indptr, indices = csr_from_edges(n, su, sv)
    raw = sweep_metrics(indptr, indices, n_threads=n_threads)
    nn = component_size.astype(np.float64)
    betweenness = raw["betweenness"]
    pairs = (nn - 1.0) * (nn - 2.0) / 2.0
    harmonic = raw["harmonic"]
    with np.errstate(invalid="ignore", divide="ignore"):
        harmonic = np.where(nn > 1, harmonic / (nn - 1.0), 0.0)
        betweenness_normed = np.where(nn > 2, betweenness / np.where(nn > 2, pairs, 1.0), betweenness)
    eccentricity = raw["eccentricity"]
    return {
        "Eccentricity": eccentricity,
        "Eccentricity_normed": eccentricity / nn,
        "HarmonicCentrality": harmonic,
        "Closeness": raw["closeness"],
        "Betweenness": betweenness,
        "Betweenness_normed": betweenness_normed,
    }


def metrics_from_igraph(g, component_size: np.ndarray, *, n_threads: int | None = None) -> dict[str, np.ndarray]:
    """The body of ``graphs._metrics_from_igraph(g, component_size)``.

    Same keys, same values to the last bit. igraph still gives the linear-time columns
    (degree, coreness, local transitivity); the four all-pairs columns come from one
    parallel sweep.
    """
    n = g.vcount()
    edges = np.asarray(g.get_edgelist(), dtype=np.int64).reshape(-1, 2)
    hop = hop_metrics(n=n, su=edges[:, 0], sv=edges[:, 1], component_size=component_size, n_threads=n_threads)
    return {
        "Nsubgraph": component_size.astype(np.float64),
        "Degrees": np.asarray(g.degree(), dtype=np.float64),
        "Coreness": np.asarray(g.coreness(), dtype=np.float64),
        "ClusteringCoefficient": np.asarray(g.transitivity_local_undirected(mode="nan"), dtype=np.float64),
        **hop,
    }
