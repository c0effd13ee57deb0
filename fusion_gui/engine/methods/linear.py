"""Linear merge: the weighted mean (or weighted sum) of all inputs, base included."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from .base import MergeMethod, MethodResult, ParamSpec, register


def linear(tensors: Sequence[torch.Tensor], base_index: int | None, params: Mapping[str, Any],
           per_model: Sequence[Mapping[str, Any]], generator: torch.Generator | None
           ) -> MethodResult:
    first = tensors[0]
    if not first.is_floating_point():
        raise InputError("The linear method can only merge floating-point tensors.")
    # mergekit computes in float32 (float64 stays float64) whatever the input dtype, with one
    # addcmul_ per input in input order, then returns the input dtype.
    dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
    weights = torch.tensor([float(p["weight"]) for p in per_model], dtype=dtype,
                           device=first.device)
    result = torch.zeros_like(first, dtype=dtype)
    for tensor, weight in zip(tensors, weights.unbind(0)):
        result.addcmul_(tensor, weight)
    if params.get("normalize", True):
        total = weights.sum()
        if total == 0:
            raise InputError("The linear weights sum to zero, so they cannot be normalized; "
                             "change a weight or set normalize to false.")
        result.div_(total)
    return MethodResult(result.to(first.dtype))


register(MergeMethod(
    name="linear",
    pretty_name="Linear",
    description="Weighted average of all models' weights.",
    reference="https://arxiv.org/abs/2203.05482",
    fn=linear,
    params=(
        ParamSpec("weight", "model", float, required=True, applies_to_base=True,
                  help="This model's share of the average."),
        ParamSpec("normalize", "global", bool, True,
                  help="Divide by the sum of the weights (a mean rather than a sum)."),
    ),
    base="optional",
    min_models=1,
))
