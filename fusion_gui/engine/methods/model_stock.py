"""Model Stock: move from the base towards the average of the fine-tunes by a ratio that the
angle between their changes decides (Jang et al., 2024).

Follows mergekit 0.1.5: computed in the dtype of the given tensors with mergekit's operations in
mergekit's order, so results are bit-identical to mergekit's on the same device.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from .base import MergeMethod, MethodResult, ParamSpec, register


def model_stock(tensors: Sequence[torch.Tensor], base_index: int | None,
                params: Mapping[str, Any], per_model: Sequence[Mapping[str, Any]],
                generator: torch.Generator | None) -> MethodResult:
    if base_index is None:
        raise InputError("Model Stock needs a base model.")
    if not tensors[0].is_floating_point():
        raise InputError("Model Stock can only merge floating-point tensors.")
    base = tensors[base_index]
    tuned = [t for i, t in enumerate(tensors) if i != base_index]
    if len(tuned) < 2:
        raise InputError("Model Stock needs at least two models besides the base.")
    shape = base.shape
    if params.get("filter_wise", False):
        # One ratio per row (output filter) of a weight; a 1-D tensor is one row.
        if base.dim() == 1:
            base, tuned = base.unsqueeze(0), [t.unsqueeze(0) for t in tuned]
    else:
        base, tuned = base.reshape(-1), [t.reshape(-1) for t in tuned]

    # Mean cosine of the angles between every pair of changes from the base.
    changes = [t - base for t in tuned]
    cosines = []
    for i in range(len(changes)):
        for j in range(i + 1, len(changes)):
            a, b = changes[i], changes[j]
            norms = torch.norm(a, dim=-1) * torch.norm(b, dim=-1)
            cosines.append(((a * b).sum(dim=-1) / norms.clamp(min=1e-6)).clamp(-1, 1))
    cos = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    # The paper's ratio t = k cos / (1 + (k - 1) cos); where that has no finite value,
    # keep the base.
    k = len(tuned)
    denominator = 1 + (k - 1) * cos
    singular = denominator.abs() < 1e-6
    ratio = torch.where(singular, torch.zeros_like(cos),
                        (k * cos) / torch.where(singular, torch.ones_like(denominator),
                                                denominator))
    average = sum(tuned) / k
    return MethodResult((ratio * average + (1 - ratio) * base).reshape(shape))


register(MergeMethod(
    name="model_stock",
    scratch=lambda n, c: (2 * n + 3) * c,  # measured: bench_memory.py --scratch
    pretty_name="Model Stock",
    description="Moves from the base towards the fine-tunes' average by a ratio set by the "
                "angle between their changes.",
    reference="https://arxiv.org/abs/2403.19522",
    fn=model_stock,
    params=(
        ParamSpec("filter_wise", "global", bool, False,
                  help="One ratio per row of each weight instead of one per tensor."),
    ),
    base="required",
    min_models=3,  # the base and at least two others
))
