"""Passthrough: copy one model's tensor, optionally scaled (used for layer stacking)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from .base import MergeMethod, MethodResult, ParamSpec, register


def passthrough(tensors: Sequence[torch.Tensor], base_index: int | None,
                params: Mapping[str, Any], per_model: Sequence[Mapping[str, Any]],
                generator: torch.Generator | None) -> MethodResult:
    scale = per_model[0].get("scale") if per_model else None
    # A Python scalar, as mergekit multiplies, so 16-bit results round identically.
    return MethodResult(tensors[0] if scale is None else tensors[0] * float(scale))


register(MergeMethod(
    name="passthrough",
    scratch=lambda n, c: c,  # measured: bench_memory.py --scratch
    pretty_name="Passthrough",
    description="Copies one model's tensors unchanged, optionally scaled.",
    reference="https://github.com/arcee-ai/mergekit",
    fn=passthrough,
    params=(
        ParamSpec("scale", "model", float, None, applies_to_base=True,
                  help="Multiply the tensor by this factor (leave empty to copy as is)."),
    ),
    base="none",
    min_models=1,
    max_models=1,
))
