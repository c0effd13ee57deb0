"""Drill-down of one tensor across models: each model's change from the base as a histogram, an image,
a singular value spectrum with the LoRA rank it would need, the models' sign agreement, and what
TIES / DARE / breadcrumbs would keep at a density. Results are cached (LRU) per files, tensor and settings.

Memory: the base tensor, one model's tensor and its float32 change at a time, one mask at a time, the
TIES election's float32 sum and one byte per element per model (and two in all for sign agreement).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Generator
from dataclasses import replace

import numpy as np
import torch

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.inspect import pictures
from fusion_gui.engine.inspect.opening import check_tensor, files_identity, opened
from fusion_gui.engine.methods.sparsify import keep_band, keep_largest
from fusion_gui.events import Event, ModelChange, Progress, TensorDrillDown

BREADCRUMBS_GAMMA = 0.01  # the outlier fraction breadcrumbs drops (mergekit's default)
CACHE_SIZE = 16  # drill-downs kept; the results are small (a few hundred KB each)

_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _cached(key) -> TensorDrillDown | None:
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
        return hit


def _remember(key, result: TensorDrillDown) -> None:
    with _cache_lock:
        _cache[key] = result
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def _change(model: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """model - base in float32, row chunk by row chunk (no float32 copy of either input)."""
    m, b = pictures.as_matrix(model), pictures.as_matrix(base)
    out = torch.empty(m.shape, dtype=torch.float32)
    for start, stop in pictures.row_chunks(m.shape[0], m.shape[1], 1):
        torch.sub(m[start:stop].float(), b[start:stop].float(), out=out[start:stop])
    return out


def _max_abs_change(model: torch.Tensor, base: torch.Tensor) -> float:
    m, b = pictures.as_matrix(model), pictures.as_matrix(base)
    return max((float((m[a:z].float() - b[a:z].float()).abs().max())
                for a, z in pictures.row_chunks(m.shape[0], m.shape[1], 1)), default=0.0)


def _norm_sq(t: torch.Tensor) -> float:
    m = pictures.as_matrix(t)
    return sum(float(m[a:z].double().square().sum()) for a, z in pictures.row_chunks(*m.shape, 1))


class _Election:
    """TIES's sign election over the models' trimmed changes: keeps each model's trimmed signs (int8)
    and the running sum; after the last model, the elected sign decides what each model keeps."""

    def __init__(self, models: int) -> None:
        self.models = models
        self.signs: list[torch.Tensor] = []
        self.total: torch.Tensor | None = None

    def add(self, change: torch.Tensor, trim: torch.Tensor) -> None:
        if self.models == 1:  # one model elects its own signs: TIES keeps the trim's non-zero changes
            self.signs.append(trim.logical_and_(change != 0))
            return
        if self.total is None:
            self.total = torch.zeros(change.shape, dtype=torch.float32)
        signs = torch.empty(change.shape, dtype=torch.int8)
        for a, z in pictures.row_chunks(*change.shape, 1):  # no float32 copy of the trimmed change
            kept = change[a:z] * trim[a:z]
            self.total[a:z] += kept
            signs[a:z] = kept.sign_()
        self.signs.append(signs)

    def kept_masks(self):
        if self.models == 1:
            yield self.signs.pop()
            return
        elected = self.total.sign_().to(torch.int8)
        self.total = None
        for signs in self.signs:
            yield (signs != 0) & (signs == elected)


def _masks(change: torch.Tensor, density: float, seed: int):
    """(method, element mask) of what each method keeps of this change, one mask at a time (TIES before
    its election). Ties at a cut are kept evenly spread ("spread"): the same counts as a merge, without
    its sort of the whole tensor."""
    n = change.numel()
    if 0 < density < 1:
        yield "ties", keep_largest(change, max(1, int(density * n)), "spread")
    else:
        yield "ties", torch.full_like(change, density > 0, dtype=torch.bool)
    rng = torch.Generator().manual_seed(seed)
    dare = torch.empty(change.shape, dtype=torch.bool)
    for a, z in pictures.row_chunks(*change.shape, 1):  # no float32 tensor of draws for the whole change
        torch.lt(torch.rand(change[a:z].shape, generator=rng), density, out=dare[a:z])
    yield "dare", dare
    del dare
    band_keep = max(0, int(density * n))
    skip = max(0, n - band_keep - int(BREADCRUMBS_GAMMA * n))
    if density < 1:
        yield "breadcrumbs", keep_band(change, skip, skip + band_keep, "spread")
    else:
        yield "breadcrumbs", torch.ones_like(change, dtype=torch.bool)


def _any_signs(change: torch.Tensor, any_pos: torch.Tensor | None, any_neg: torch.Tensor | None):
    """Running 'some model changed this element up / down' masks, formed a row chunk at a time."""
    if any_pos is None:
        any_pos = torch.zeros(change.shape, dtype=torch.bool)
        any_neg = torch.zeros(change.shape, dtype=torch.bool)
    for a, z in pictures.row_chunks(*change.shape, 1):
        any_pos[a:z] |= change[a:z] > 0
        any_neg[a:z] |= change[a:z] < 0
    return any_pos, any_neg


def drill_down(tensor: str, models: list[str], base: str, density: float = 0.5, bins: int = 64,
               image_size: int = 256, seed: int = 0, cancel: CancelToken | None = None,
               ) -> Generator[Event, None, TensorDrillDown]:
    """One tensor of `models`, each against `base`. Progress is yielded as each model is read."""
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    with opened([base] + list(models)) as readers:
        shape = check_tensor(tensor, readers)
        key = (tuple(files_identity(r) for r in readers), tensor, density, bins, image_size, seed)
        hit = _cached(key)
        if hit is not None:
            return replace(hit, cached=True, seconds=time.perf_counter() - start)
        ref, rest = readers[0], readers[1:]
        nbytes = ref.tensors[tensor].nbytes
        total = nbytes * (1 + 2 * len(rest))  # the base once, each model twice (range, then pictures)
        done = nbytes

        def progress(what: str) -> Progress:
            return Progress(done // nbytes, 1 + 2 * len(rest), done, total, time.perf_counter() - start, what)

        base_t = ref.get(tensor)
        yield progress(f"{tensor} of {ref.label}")
        # Shared bin edges need every change's range first: a cheap first pass.
        reach = 0.0
        for r in rest:
            cancel.raise_if_cancelled()
            reach = max(reach, _max_abs_change(r.get(tensor), base_t))
            done += nbytes
            yield progress(f"range of {r.label}")
        edges = np.linspace(-(reach or 1.0), reach or 1.0, bins + 1)
        base_norm = float(np.sqrt(_norm_sq(base_t))) or 1.0
        rows, cols = pictures.as_matrix(base_t).shape
        block = pictures.block_shape(rows, cols, image_size)
        election = _Election(len(rest))
        any_pos = any_neg = None
        parts, svd = [], "exact"
        for r in rest:
            cancel.raise_if_cancelled()
            change = _change(r.get(tensor), base_t)
            done += nbytes
            energy = _norm_sq(change)
            squares = pictures.block_squares(change, block)
            values, svd = pictures.spectrum(change)
            pictures_of, kept = {}, {}
            for method, mask in _masks(change, density, seed):
                if method == "ties":
                    election.add(change, mask)
                else:
                    pictures_of[method] = pictures.block_fraction(mask, block)
                    kept[method] = float(mask.sum()) / mask.numel()
                del mask
            if len(rest) > 1:  # sign agreement needs two models
                any_pos, any_neg = _any_signs(change, any_pos, any_neg)
            counts = pictures.histogram(change, edges)
            parts.append(dict(
                model=r.label, relative_change=float(np.sqrt(energy)) / base_norm, counts=counts,
                log_counts=np.log10(1 + counts.astype(np.float64)),
                image=np.sqrt(squares).astype(np.float32),
                row_norms=np.sqrt(squares.sum(1)).astype(np.float32),
                col_norms=np.sqrt(squares.sum(0)).astype(np.float32),
                spectrum=values, effective_rank=pictures.effective_rank(values),
                rank_90=pictures.energy_rank(values, energy, 0.90),
                rank_99=pictures.energy_rank(values, energy, 0.99),
                masks=pictures_of, kept=kept))
            del change
            yield progress(f"{tensor} of {r.label}")
        agreement = None
        if len(rest) > 1:
            agreement = float(1 - (any_pos & any_neg).float().mean())
        del any_pos, any_neg, base_t
        for part, ties in zip(parts, election.kept_masks()):
            part["masks"]["ties"] = pictures.block_fraction(ties.reshape(rows, cols), block)
            part["kept"]["ties"] = float(ties.sum()) / ties.numel()
        result = TensorDrillDown(
            name=tensor, shape=shape, base_model=ref.label, models=tuple(r.label for r in rest),
            bin_edges=edges, changes=tuple(ModelChange(**p) for p in parts), svd=svd, density=density,
            sign_agreement=agreement, block=block, seconds=time.perf_counter() - start)
        _remember(key, result)
        return result
