"""SLERP: spherical interpolation between the base and one other model, per tensor.

Follows mergekit 0.1.5: each tensor is flattened to one vector (mergekit's leading axis is its
batch of tensors, never a weight's rows, so 1-D tensors are one vector too), computed in
float32 (float64 stays float64) in chunks of 2**20 elements as mergekit does for one tensor,
with linear interpolation when the vectors are (anti)collinear. The result has the input dtype.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from .base import MergeMethod, MethodResult, ParamSpec, register

DOT_THRESHOLD = 0.9995  # |cos| above this: lerp, as mergekit (not a recipe parameter there)
_EPS = 1e-8
_CHUNK = 1 << 20  # mergekit's chunk for a batch of one tensor; chunking fixes float32 rounding


def slerp_tensors(t: float, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    dtype = torch.float64 if v0.dtype == torch.float64 else torch.float32
    a, b = v0.reshape(1, -1), v1.reshape(1, -1)
    tt = torch.tensor([[t]], dtype=dtype, device=v0.device)  # mergekit's coefficient tensor
    if not a.shape[1]:
        return ((1 - tt) * a + tt * b).reshape(v0.shape).to(v0.dtype)
    chunks = range(0, a.shape[1], _CHUNK)

    def part(v: torch.Tensor, start: int) -> torch.Tensor:
        return v[:, start:start + _CHUNK].to(dtype)

    norm_a = torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(part(a, s), dim=1, keepdim=True) for s in chunks]), dim=0)
    norm_b = torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(part(b, s), dim=1, keepdim=True) for s in chunks]), dim=0)
    norm_a = torch.where(norm_a > _EPS, norm_a, 1)
    norm_b = torch.where(norm_b > _EPS, norm_b, 1)
    # Normalize before multiplying so the dot product cannot overflow.
    dot = torch.stack([(part(a, s) / norm_a * (part(b, s) / norm_b)).sum(dim=1, keepdim=True)
                       for s in chunks]).sum(dim=0).clamp(-1, 1)
    linear = dot.abs() > DOT_THRESHOLD
    theta = torch.acos(torch.where(linear, 0, dot))
    sin_theta = torch.sin(theta)
    coef_a = torch.where(linear, 1 - tt, torch.sin((1 - tt) * theta) / sin_theta)
    coef_b = torch.where(linear, tt, torch.sin(tt * theta) / sin_theta)
    result = torch.empty_like(a)  # input dtype: each chunk is rounded once, like mergekit
    for s in chunks:
        result[:, s:s + _CHUNK] = coef_a * part(a, s) + coef_b * part(b, s)
    return result.reshape(v0.shape)


def slerp(tensors: Sequence[torch.Tensor], base_index: int | None, params: Mapping[str, Any],
          per_model: Sequence[Mapping[str, Any]], generator: torch.Generator | None
          ) -> MethodResult:
    if base_index is None or len(tensors) != 2:
        raise InputError("SLERP needs a base model and exactly one other model.")
    if not tensors[0].is_floating_point():
        raise InputError("SLERP can only merge floating-point tensors.")
    return MethodResult(slerp_tensors(float(params["t"]), tensors[base_index],
                                      tensors[1 - base_index]))


register(MergeMethod(
    name="slerp",
    scratch=lambda n, c: 2 * c + 4,  # measured: bench_memory.py --scratch
    pretty_name="SLERP",
    description="Spherical interpolation between the base and one other model.",
    reference="https://en.wikipedia.org/wiki/Slerp",
    fn=slerp,
    params=(
        ParamSpec("t", "global", float, required=True, minimum=0.0, maximum=1.0,
                  help="Interpolation factor: 0 gives the base, 1 the other model."),
    ),
    base="required",
    min_models=2,
    max_models=2,
))
