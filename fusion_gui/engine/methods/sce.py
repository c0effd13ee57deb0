"""SCE (Select, Calculate, Erase; FuseChat 2.0): keep the elements where the models' changes
vary most, weight each model by the mean square of its change, drop changes against the
elected sign, and take the weighted mean of the rest.

Follows mergekit 0.1.5: computed in the dtype of the given tensors with mergekit's operations
in mergekit's order; the selection uses torch.topk like mergekit, so ties among equal
variances are broken the same way on the same device.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from .base import MergeMethod, MethodResult, ParamSpec, register


def select_by_variance(changes: torch.Tensor, fraction: float) -> torch.Tensor:
    """0/1 mask (one weight's shape) of the `fraction` of the elements with non-zero
    variance across the models (rows of `changes`) that have the largest variance."""
    if fraction <= 0:
        return torch.zeros_like(changes[0])
    if fraction >= 1:
        return torch.ones_like(changes[0])
    spread = torch.var(changes, dim=0, unbiased=False)
    # mergekit's count: int64 count times a float gives a float32 product, then truncated.
    k = int(torch.count_nonzero(spread) * fraction)
    mask = torch.zeros_like(spread)
    if k:
        mask.view(-1)[torch.topk(spread.abs().view(-1), k=k, largest=True).indices] = 1
    return mask


def sce(tensors: Sequence[torch.Tensor], base_index: int | None, params: Mapping[str, Any],
        per_model: Sequence[Mapping[str, Any]], generator: torch.Generator | None
        ) -> MethodResult:
    if base_index is None:
        raise InputError("SCE needs a base model.")
    if not tensors[0].is_floating_point():
        raise InputError("SCE can only merge floating-point tensors.")
    base = tensors[base_index]
    others = [t for i, t in enumerate(tensors) if i != base_index]
    if not others:
        return MethodResult(base)
    changes = torch.stack([t - base for t in others], dim=0)
    topk = float(params.get("select_topk", 1.0))
    if topk < 1:  # Select
        changes = changes * select_by_variance(changes, topk).unsqueeze(0)

    # Calculate: each model's weight is its change's mean square, normalized to sum to 1.
    energy = changes.square().reshape(changes.shape[0], -1).mean(dim=1)
    total = torch.sum(energy).item()
    weights = (torch.ones_like(energy) / energy.shape[0] if abs(total) < 1e-6
               else energy / total)
    weights = weights.reshape(-1, *([1] * (changes.dim() - 1)))

    # Erase: keep the changes whose sign agrees with that of the summed changes (zeros drop).
    elected = (changes.sum(dim=0) >= 0).to(changes.dtype) * 2 - 1
    agree = changes.sign() == elected
    del elected
    kept = weights * agree
    del agree
    mixed = (changes * kept).sum(dim=0) / torch.sum(kept, dim=0).clamp(min=1e-6)
    return MethodResult(base + mixed)


register(MergeMethod(
    name="sce",
    scratch=lambda n, c: 10 * c + 2 * (n - 1) * c,  # measured: bench_memory.py --scratch
    pretty_name="SCE",
    description="Keeps the most varying changes, weights models by change size, drops "
                "sign conflicts, averages the rest.",
    reference="https://arxiv.org/abs/2408.07990",
    fn=sce,
    params=(
        ParamSpec("select_topk", "global", float, 1.0, 0.0, 1.0,
                  help="Fraction of the elements (largest variance across models) to keep."),
        ParamSpec("int8_mask", "global", bool, False,
                  help="Accepted for mergekit compatibility; has no effect on results."),
    ),
    base="required",
    min_models=1,
))
