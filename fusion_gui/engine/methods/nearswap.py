"""NearSwap: take the other model's value where it is close to the base's, interpolating
towards the base as the two move apart (alchemonaut's QuartetAnemoi merges).

Follows mergekit 0.1.5 bit for bit: computed in the dtype of the given tensors.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from .base import MergeMethod, MethodResult, ParamSpec, register


def nearswap(tensors: Sequence[torch.Tensor], base_index: int | None, params: Mapping[str, Any],
             per_model: Sequence[Mapping[str, Any]], generator: torch.Generator | None
             ) -> MethodResult:
    if base_index is None or len(tensors) != 2:
        raise InputError("NearSwap needs a base model and exactly one other model.")
    if not tensors[0].is_floating_point():
        raise InputError("NearSwap can only merge floating-point tensors.")
    base, other = tensors[base_index], tensors[1 - base_index]
    # Share of the other model: 1 where |other - base| <= t, else t / |other - base|.
    distance = torch.abs(base - other).clamp(min=1e-6)
    share = (float(params["t"]) / distance).clamp(min=0, max=1)
    return MethodResult(share * other + (1 - share) * base)


register(MergeMethod(
    name="nearswap",
    scratch=lambda n, c: 10 * c,  # measured: bench_memory.py --scratch
    pretty_name="NearSwap",
    description="Takes the other model's weights where they are within t of the base's, "
                "blending towards the base beyond.",
    reference="https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001",
    fn=nearswap,
    params=(
        ParamSpec("t", "global", float, required=True, minimum=0.0, maximum=1.0,
                  help="Distance within which the other model's value is taken whole."),
    ),
    base="required",
    min_models=2,
    max_models=2,
))
