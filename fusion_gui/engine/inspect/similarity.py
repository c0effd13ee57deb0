"""Many models at once: N models' changes from one base compared pairwise (cosine and sign conflicts),
for the whole model and per layer, streamed one tensor at a time, and clustered ("which are alike").

Per tensor only the base and the N models' copies of that tensor are in memory; the changes are
formed a row chunk at a time. Pairwise sums are accumulated in float64; the dot products are float64
matrix products, the sign counts float32 ones (exact for counts below 2^24; see pair_sums).
"""

from __future__ import annotations

import time
from collections.abc import Generator

import numpy as np
import torch

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.inspect.opening import opened
from fusion_gui.engine.inspect.pictures import as_matrix
from fusion_gui.engine.naming import layer_of
from fusion_gui.events import Event, Log, Progress, SimilarityGroup, SimilarityResult

CHUNK_ELEMENTS = 1 << 22  # elements of each model's change formed at once


class _PairSums:
    """Running pairwise sums over a group of tensors: dot products, opposite-sign and both-changed counts."""

    def __init__(self, n: int) -> None:
        self.dots = np.zeros((n, n))
        self.opposite = np.zeros((n, n))
        self.both = np.zeros((n, n))
        self.tensors = 0

    def add(self, dots: np.ndarray, opposite: np.ndarray, both: np.ndarray) -> None:
        self.dots += dots
        self.opposite += opposite
        self.both += both

    def group(self, name: str) -> SimilarityGroup:
        norms = np.sqrt(np.clip(np.diag(self.dots), 0, None))
        outer = np.outer(norms, norms)
        cosine = np.divide(self.dots, outer, out=np.zeros_like(self.dots), where=outer > 0)
        conflict = np.divide(self.opposite, self.both, out=np.zeros_like(self.both), where=self.both > 0)
        return SimilarityGroup(group=name, cosine=cosine, sign_conflict=conflict, change_norm=norms,
                               tensors=self.tensors)


EXACT_COUNT = 1 << 24  # float32 holds every integer up to 2^24: sign counts over fewer columns are exact


def pair_sums(changes: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an N x k block of changes: dot products, counts of elements changed with opposite signs,
    and counts of elements both changed, for every pair (N x N each).

    The counts are products of 0/1 matrices: every partial sum is an integer no larger than the
    columns summed, so float32 is exact (and about twice as fast as float64) over at most 2^24
    columns at a time; longer rows are counted in slices of that many and summed in float64."""
    n, k = changes.shape
    opposite, both = np.zeros((n, n)), np.zeros((n, n))
    for a in range(0, k, EXACT_COUNT):
        part = changes[:, a:a + EXACT_COUNT]
        pos, neg = (part > 0).float(), (part < 0).float()
        nonzero = pos + neg
        opposite += (pos @ neg.T).double().numpy()
        both += (nonzero @ nonzero.T).double().numpy()
    c = changes.double()
    return (c @ c.T).numpy(), opposite + opposite.T, both


def _group_name(layer: int | None) -> str:
    return "outside layers" if layer is None else f"layer {layer}"


def _names(readers) -> list[str]:
    base = readers[0]
    common = [n for n in base.tensors if all(n in r.tensors for r in readers[1:])
              and base.tensors[n].dtype.is_floating_point
              and all(tuple(r.tensors[n].shape) == tuple(base.tensors[n].shape) for r in readers[1:])]
    if not common:
        raise InputError(f"The models share no weight tensor of the same shape with base '{base.label}'; "
                         "they are not the same architecture.")
    return sorted(common, key=lambda n: (layer_of(n) is None, layer_of(n) or 0))


def cluster(cosine: np.ndarray) -> tuple[tuple[int, ...], np.ndarray | None, str]:
    """Dendrogram leaf order and scipy linkage matrix (average linkage on 1 - cosine), or why not."""
    n = cosine.shape[0]
    if n < 3:
        return tuple(range(n)), None, "Clustering needs at least three models."
    try:
        from scipy.cluster.hierarchy import leaves_list, linkage
        from scipy.spatial.distance import squareform
    except ImportError:
        return tuple(range(n)), None, "Clustering needs scipy, which is not installed."
    distance = np.clip(1 - (cosine + cosine.T) / 2, 0, 2)
    np.fill_diagonal(distance, 0)
    links = linkage(squareform(distance, checks=False), method="average")
    return tuple(int(i) for i in leaves_list(links)), links, ""


def similarity(models: list[str], base: str, cancel: CancelToken | None = None,
               ) -> Generator[Event, None, SimilarityResult]:
    """Compare the changes of `models` from `base`: cosine and sign conflicts of every pair."""
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    if len(models) < 2:
        raise InputError("Comparing models needs at least two models besides the base.")
    with opened([base] + list(models)) as readers:
        names = _names(readers)
        skipped = len(readers[0].tensors) - len(names)
        if skipped:
            yield Log(f"{skipped} tensors of the base are not in every model with the same shape "
                      "(or are not weights); they are not compared.", "warning")
        n = len(models)
        whole, groups = _PairSums(n), {}
        total_bytes = sum(readers[0].tensors[t].nbytes for t in names) * (n + 1)
        done = 0
        for i, name in enumerate(names):
            cancel.raise_if_cancelled()
            base_t = as_matrix(readers[0].get(name))
            tensors = [as_matrix(r.get(name)) for r in readers[1:]]
            group = groups.setdefault(layer_of(name), _PairSums(n))
            rows_per_chunk = max(1, CHUNK_ELEMENTS // max(1, base_t.shape[1]))
            for a in range(0, base_t.shape[0], rows_per_chunk):
                ref = base_t[a:a + rows_per_chunk].float().reshape(-1)
                block = torch.stack([t[a:a + rows_per_chunk].float().reshape(-1) - ref for t in tensors])
                sums = pair_sums(block)
                whole.add(*sums)
                group.add(*sums)
            whole.tensors += 1
            group.tensors += 1
            done += readers[0].tensors[name].nbytes * (n + 1)
            del base_t, tensors
            yield Progress(i + 1, len(names), done, total_bytes, time.perf_counter() - start, name)
        whole_group = whole.group("model")
        order, links, note = cluster(whole_group.cosine)
        keys = sorted((k for k in groups if k is not None)) + ([None] if None in groups else [])
        return SimilarityResult(
            models=tuple(r.label for r in readers[1:]), base_model=readers[0].label, whole=whole_group,
            groups=tuple(groups[k].group(_group_name(k)) for k in keys), order=order, linkage=links,
            clustering_note=note, seconds=time.perf_counter() - start)
