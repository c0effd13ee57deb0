"""Generalized task arithmetic: task_arithmetic, TIES, DARE, Model Breadcrumbs, DELLA.

One function (mergekit's GeneralizedTaskArithmeticMerge) configured per method: each model's
delta from the base is sparsified, weighted, optionally filtered by TIES sign election, summed,
optionally normalized by the summed weights, scaled by lambda and added to the base. Everything
is computed in the dtype of the given tensors, with mergekit's operations in mergekit's order,
so results are bit-identical to mergekit's for the deterministic methods.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from ..errors import InputError
from . import sparsify
from .base import MergeMethod, MethodResult, ParamSpec, register, side_by_side_limit


# Run the sorts side by side for tensors between these sizes; above, one sort's scratch is already
# large, so one at a time. Inside a merge the plan's memory budget sets the limit instead (below).
_PARALLEL_NUMEL, _PARALLEL_MAX_NUMEL = 1 << 16, 1 << 26
# What one model's magnitude sparsification holds while it runs, per element, besides its delta:
# float32 keys, int64 order, the sort's own scratch, the mask and the masked delta (measured on
# CPU, bf16 and float32 alike; benchmarks/bench_memory.py).
SORT_BYTES = 20
_POOL: ThreadPoolExecutor | None = None


def sort_scratch(itemsize: int) -> float:
    """Bytes per element one more model's sort adds when it runs beside the others."""
    return SORT_BYTES + itemsize  # + its delta


def _scratch(sparsification: str | None, consensus: bool) -> Callable[[int, int], float]:
    """Bytes per element a variant holds besides its inputs, with one model's sparsification at a
    time, for n inputs in a dtype of `itemsize` bytes (the parts measured with bench_memory.py)."""
    def scratch(n: int, itemsize: int) -> float:
        held = itemsize  # the delta being made
        if sparsification in ("magnitude", "magnitude_outliers"):
            held += SORT_BYTES
        elif sparsification == "random":  # float32 draws, the mask, its cast and the masked delta
            held += 5 + 2 * itemsize
        elif sparsification == "della_magprune":  # int64 order, float32 ranks and draws, the mask
            held += 16 + 2 * itemsize
        if consensus or n - 1 > 4:  # every delta in one buffer, with the sign masks
            held += (n - 1) * (itemsize + 3)
        else:  # a float32 running sum; a sparsifier's temporaries, made once per model, also leave
            held += 6 + ((n - 1) * (itemsize + 3) if sparsification else 0)  # the allocator's gaps (measured)
        return held + 2 * itemsize  # the mixed change and the result
    return scratch


def _width(numel: int, models: int, on_cpu: bool, limit: int | None) -> int:
    """How many models' sparsifications run at once for a tensor of `numel` elements."""
    if not on_cpu or models < 2 or numel < _PARALLEL_NUMEL:
        return 1
    if limit is None:  # outside a merge: the size rule
        return models if numel <= _PARALLEL_MAX_NUMEL else 1
    return max(1, min(models, limit))


def _in_order(fn: Callable, items: Sequence[int], width: int) -> Iterator:
    """fn over items, results in order, at most `width` running or waiting at once; each result
    is released once the caller has taken it."""
    if width <= 1:
        yield from (fn(i) for i in items)
        return
    pending: deque[Future] = deque(_pool().submit(fn, i) for i in items[:width])
    rest = iter(items[width:])
    while pending:
        result = pending.popleft().result()
        following = next(rest, None)
        if following is not None:
            pending.append(_pool().submit(fn, following))
        yield result
        del result


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="fusion-topk")
    return _POOL


def _sparsifier(kind: str | None) -> Callable[..., torch.Tensor] | None:
    if kind is None:
        return None
    if kind == "magnitude":
        return lambda d, p, rescale, g: sparsify.magnitude(d, p.get("density", 1.0), rescale)
    if kind == "random":
        return lambda d, p, rescale, g: sparsify.bernoulli(
            d, p.get("density", 1.0), rescale, generator=g)
    if kind == "magnitude_outliers":
        return lambda d, p, rescale, g: sparsify.magnitude_outliers(
            d, p.get("density", 1.0), p.get("gamma", 0.01), rescale)
    return lambda d, p, rescale, g: sparsify.della_magprune(
        d, p.get("density", 1.0), p.get("epsilon", 0.15), rescale, generator=g)


def generalized_task_arithmetic(
    tensors: Sequence[torch.Tensor], base_index: int | None, params: Mapping[str, Any],
    per_model: Sequence[Mapping[str, Any]], generator: torch.Generator | None, *,
    sparsification: str | None, consensus: bool,
) -> MethodResult:
    if base_index is None:
        raise InputError("This merge method needs a base model.")
    base = tensors[base_index]
    others = [i for i in range(len(tensors)) if i != base_index]
    if not others:
        return MethodResult(base)
    cut = _sparsifier(sparsification)
    rescale = bool(params.get("rescale", False))
    # Weights rounded to the compute dtype and shaped (n, 1, ...) exactly like mergekit's.
    weights = torch.tensor([float(per_model[i]["weight"]) for i in others], dtype=base.dtype,
                           device=base.device).reshape(len(others), *([1] * base.dim()))
    counting = consensus or cut is not None

    def delta_of(i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Model i's sparsified change, and how many raw change elements were non-zero."""
        delta = tensors[i] - base
        nonzero = torch.count_nonzero(delta) if counting else None
        return (cut(delta, per_model[i], rescale, generator) if cut else delta), nonzero

    # Magnitude top-k sorts every delta (mergekit's tie order needs the full sort), which
    # dominates a TIES merge on the CPU; the sorts are independent, so run them side by side.
    # Random sparsifiers stay sequential: they share one generator, whose order matters.
    # At most as many side by side as the plan's memory budget allows (side_by_side_limit).
    width = 1
    if sparsification in ("magnitude", "magnitude_outliers"):
        width = _width(base.numel(), len(others), base.device.type == "cpu", side_by_side_limit())
    computed = _in_order(delta_of, others, width)
    changed = torch.zeros((), dtype=torch.int64, device=base.device)  # non-zero raw deltas

    stats: dict[str, Any] = {}
    if consensus or len(others) > 4:
        # Sign election needs every delta twice, so they live in one (n, ...) buffer like
        # mergekit's, and torch.sum(dim=0) over it keeps mergekit's summation order (which
        # torch changes from a plain running sum at 5 or more rows).
        deltas = base.new_empty((len(others), *base.shape))
        for row, (delta, nonzero) in enumerate(computed):
            deltas[row] = delta
            changed = changed + nonzero if counting else changed
            del delta
        deltas.mul_(weights)
        if consensus:
            positive = deltas.sum(dim=0) >= 0  # elected sign: that of the summed deltas
            any_pos = torch.zeros_like(base, dtype=torch.bool)
            any_neg = torch.zeros_like(base, dtype=torch.bool)
            for d in deltas:
                above, below = d > 0, d < 0
                any_pos |= above
                any_neg |= below
                d.mul_(torch.where(positive, above, below))  # drop those against the sign
            del positive, above, below
            conflict = torch.count_nonzero(any_pos & any_neg)
            del any_pos, any_neg
            stats["sign_conflict"] = float(conflict) / max(1, base.numel())
        mixed = deltas.sum(dim=0)
        kept = torch.count_nonzero(deltas)
        if consensus:
            # Divide by the weights of the models whose delta survived (survivors are
            # never zero), summed in the same buffer so the order matches mergekit's too.
            for d, w in zip(deltas, weights):
                torch.ne(d, 0, out=d).mul_(w)
            divisor = deltas.sum(dim=0)
            divisor[divisor == 0] = 1
        del deltas
    else:
        # No election and at most 4 models: a running sum is bit-identical to torch.sum(dim=0)
        # (float32 accumulation for 16-bit dtypes, rounded once) and needs one buffer.
        acc = torch.zeros_like(base, dtype=torch.float64 if base.dtype == torch.float64
                               else torch.float32)
        kept = torch.zeros((), dtype=torch.int64, device=base.device)
        for row, (d, nonzero) in enumerate(computed):
            d = d.mul_(weights[row])
            changed = changed + nonzero if counting else changed
            if cut:
                kept = kept + torch.count_nonzero(d)
            acc.add_(d)
            del d
        mixed = acc.to(base.dtype)
        del acc
    if not consensus:
        divisor = weights.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if consensus or cut:
        stats["kept_fraction"] = float(kept) / float(changed) if int(changed) else 1.0

    if params.get("normalize", False):
        mixed /= divisor
    lam = params.get("lambda", 1.0)
    if lam != 1:
        mixed *= lam
    return MethodResult((base + mixed).to(base.dtype), **stats)


def _params(normalize: bool, rescale: bool, extra: str | None) -> tuple[ParamSpec, ...]:
    specs = [
        ParamSpec("weight", "model", float, required=True,
                  help="How much of this model's change from the base to add."),
        ParamSpec("density", "model", float, 1.0, 0.0, 1.0,
                  help="Fraction of this model's changed weights to keep (1 keeps all)."),
        ParamSpec("normalize", "global", bool, normalize,
                  help="Divide the summed changes by the summed weights."),
        ParamSpec("rescale", "global", bool, rescale,
                  help="Scale kept changes back up to the L1 norm of the full change."),
        ParamSpec("lambda", "global", float, 1.0, 0.0, 4.0,
                  help="Scale of the merged change before adding it to the base."),
        ParamSpec("int8_mask", "global", bool, False,
                  help="Accepted for mergekit compatibility; has no effect on results."),
    ]
    if extra == "gamma":
        specs.append(ParamSpec("gamma", "model", float, 0.01, 0.0, 0.5,
                               help="Fraction of largest-magnitude changes dropped as outliers."))
    if extra == "epsilon":
        specs.append(ParamSpec("epsilon", "model", float, 0.15, 0.0, 0.5,
                               help="Spread of keep probabilities around density, by rank."))
    return tuple(specs)


# name, pretty name, paper, sparsification, TIES sign election, normalize, rescale, blurb
_VARIANTS = [
    ("task_arithmetic", "Task Arithmetic", "https://arxiv.org/abs/2212.04089", None, False,
     False, False, "Adds the weighted sum of each model's change from the base."),
    ("ties", "TIES", "https://arxiv.org/abs/2306.01708", "magnitude", True, True, False,
     "Keeps each model's largest changes, elects a sign per weight, averages agreeing ones."),
    ("dare_ties", "DARE TIES", "https://arxiv.org/abs/2311.03099", "random", True, False,
     True, "Randomly drops changes and rescales the rest, then TIES sign election."),
    ("dare_linear", "Linear DARE", "https://arxiv.org/abs/2311.03099", "random", False, False,
     True, "Randomly drops changes and rescales the rest, then adds them up."),
    ("breadcrumbs", "Model Breadcrumbs", "https://arxiv.org/abs/2312.06795",
     "magnitude_outliers", False, False, False,
     "Drops the largest outlier changes and the smallest ones, then adds them up."),
    ("breadcrumbs_ties", "Model Breadcrumbs with TIES", "https://arxiv.org/abs/2312.06795",
     "magnitude_outliers", True, False, False,
     "Model Breadcrumbs sparsification followed by TIES sign election."),
    ("della", "DELLA", "https://arxiv.org/abs/2406.11617", "della_magprune", True, True, True,
     "Drops changes at random, small ones more likely, then TIES sign election."),
    ("della_linear", "Linear DELLA", "https://arxiv.org/abs/2406.11617", "della_magprune",
     False, False, True, "Drops changes at random, small ones more likely, then adds them up."),
]

for (_name, _pretty, _ref, _sparse, _ties, _norm, _resc, _desc) in _VARIANTS:
    _extra = {"magnitude_outliers": "gamma", "della_magprune": "epsilon"}.get(_sparse or "")
    register(MergeMethod(
        name=_name, pretty_name=_pretty, description=_desc, reference=_ref,
        fn=partial(generalized_task_arithmetic, sparsification=_sparse, consensus=_ties),
        params=_params(_norm, _resc, _extra), base="required", min_models=2,
        random=_sparse in ("random", "della_magprune"), sign_election=_ties,
        ranks_by_magnitude=_sparse in ("magnitude", "magnitude_outliers"),
        scratch=_scratch(_sparse, _ties),
        side_by_side_scratch=sort_scratch if _sparse in ("magnitude", "magnitude_outliers") else None,
    ))
