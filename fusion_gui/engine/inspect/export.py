"""The inspection results as CSV, in long format (one number a row), for the views' Save CSV buttons."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _rows_drill_down(r):
    yield ["tensor", "model", "quantity", "index", "value"]
    for c in r.changes:
        for key, value in (("relative_change", c.relative_change), ("effective_rank", c.effective_rank),
                           ("rank_90", c.rank_90), ("rank_99", c.rank_99),
                           *((f"kept[{m}]", v) for m, v in c.kept.items())):
            yield [r.name, c.model, key, "", "" if value is None else repr(float(value))]
        for i, (lo, count) in enumerate(zip(r.bin_edges[:-1], c.counts)):
            yield [r.name, c.model, f"histogram_count[bin from {lo:.6g}]", i, int(count)]
        for key, values in (("singular_value", c.spectrum), ("row_block_norm", c.row_norms),
                            ("column_block_norm", c.col_norms)):
            for i, v in enumerate(np.asarray(values).ravel()):
                yield [r.name, c.model, key, i, repr(float(v))]
    if r.sign_agreement is not None:
        yield [r.name, "", "sign_agreement", "", repr(float(r.sign_agreement))]


def _rows_similarity(r):
    yield ["group", "model_a", "model_b", "cosine", "sign_conflict"]
    for g in (r.whole, *r.groups):
        for i, a in enumerate(r.models):
            for j, b in enumerate(r.models):
                yield [g.group, a, b, repr(float(g.cosine[i, j])), repr(float(g.sign_conflict[i, j]))]


def _rows_depth(r):
    yield [f"layer of {r.model_a}", f"layer of {r.model_b}", "cosine", "relative_diff"]
    for i, (j, c, d) in enumerate(zip(r.mapping, r.cosine, r.relative_diff)):
        yield [i, j, "" if np.isnan(c) else repr(float(c)), "" if np.isnan(d) else repr(float(d))]


def _rows_spectral(r):
    yield ["model", "tensor", "layer", "kind", "shape", "alpha", "ks_distance", "eigenvalues", "note"]
    for t in r.tensors:
        yield [t.model, t.name, "" if t.layer is None else t.layer, t.kind, "x".join(map(str, t.shape)),
               "" if np.isnan(t.alpha) else repr(t.alpha),
               "" if np.isnan(t.ks_distance) else repr(t.ks_distance), t.evals, t.note]


def write_csv(result, path: str | Path) -> None:
    """Write a TensorDrillDown, SimilarityResult, DepthMatch or SpectralResult as CSV."""
    rows = {"TensorDrillDown": _rows_drill_down, "SimilarityResult": _rows_similarity,
            "DepthMatch": _rows_depth, "SpectralResult": _rows_spectral}[type(result).__name__]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows(result))
