"""Arcee Fusion: take the other model's change only where it matters most, by an importance
score (|change| times the KL divergence of the rows' softmaxes) above an outlier threshold
(median + 1.5 IQR).

Follows mergekit 0.1.5: computed in the dtype of the given tensors with mergekit's operations
in mergekit's order. For tensors of at most 10**6 elements the quantiles are exact and the
result is mergekit's bit for bit; above that, like mergekit, they are estimated from 10**6
elements drawn with replacement, here from the merge's seeded generator (mergekit draws from
the global RNG), so a seed gives the same merge every time.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from .base import MergeMethod, MethodResult, register

SAMPLE_SIZE = 1_000_000  # mergekit's quantile sample


def importance(other: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """|other - base| times the KL divergence between the softmaxes of their last-axis rows."""
    eps = 1e-8
    p = F.softmax(other, dim=-1) + eps
    q = F.softmax(base, dim=-1) + eps
    return (other - base).abs() * torch.sum(p * torch.log(p / q), dim=-1, keepdim=True)


def outlier_threshold(scores: torch.Tensor, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """median + 1.5 * (q3 - q1) of the scores, with mergekit's index rule for quantiles."""
    flat = scores.reshape(-1)
    if flat.numel() > SAMPLE_SIZE:
        flat = flat[torch.randint(flat.numel(), (SAMPLE_SIZE,), generator=generator,
                                  device=flat.device)]
    ordered = torch.sort(flat).values
    at = (torch.tensor([0.25, 0.5, 0.75]).to(ordered.device) * (ordered.numel() - 1)).long()
    q1, median, q3 = ordered[at]
    return median + 1.5 * (q3 - q1)


def arcee_fusion(tensors: Sequence[torch.Tensor], base_index: int | None,
                 params: Mapping[str, Any], per_model: Sequence[Mapping[str, Any]],
                 generator: torch.Generator | None) -> MethodResult:
    if base_index is None or len(tensors) != 2:
        raise InputError("Arcee Fusion needs a base model and exactly one other model.")
    if not tensors[0].is_floating_point():
        raise InputError("Arcee Fusion can only merge floating-point tensors.")
    base, other = tensors[base_index], tensors[1 - base_index]
    scores = importance(other, base)
    keep = (scores >= outlier_threshold(scores, generator)).float()
    del scores
    # A float32 mask like mergekit's, so 16-bit inputs give a float32 sum (mergekit returns
    # it as is); rounded once to the input dtype here, like every method's result.
    return MethodResult((base + (other - base) * keep).to(base.dtype))


register(MergeMethod(
    name="arcee_fusion",
    scratch=lambda n, c: 28 + 2 * c,  # measured: bench_memory.py --scratch
    pretty_name="Arcee Fusion",
    description="Takes the other model's changes only where an importance score is an "
                "outlier (above median + 1.5 IQR).",
    reference="https://arcee.ai",
    fn=arcee_fusion,
    params=(),
    base="required",
    min_models=2,
    max_models=2,
    random=True,  # only tensors above 10**6 elements: the quantile sample is drawn
))
