"""Linear merge: the weighted mean (or weighted sum) of all inputs, base included."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from .base import MergeMethod, MethodResult, ParamSpec, register

CHUNK = 1 << 18  # elements per slice on the CPU: two float32 slices of 1 MB stay in L2 cache


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
    # mergekit: zeros, then addcmul_(tensor, w) per input. Starting from the first product
    # (0 + x == x) and using add_(alpha=w) (one product, one sum in the compute dtype, w rounded
    # to it first) gives the same numbers, about 2x faster on 16-bit inputs.
    ws = weights.tolist()
    total = None
    if params.get("normalize", True):
        total = weights.sum()
        if total == 0:
            raise InputError("The linear weights sum to zero, so they cannot be normalized; "
                             "change a weight or set normalize to false.")
    if first.device.type != "cpu":  # a GPU streams whole tensors faster than chunks
        result = first.to(dtype, copy=True).mul_(ws[0])
        for tensor, weight in zip(tensors[1:], ws[1:]):
            result.add_(tensor, alpha=weight)
        if total is not None:
            result.div_(total)
        return MethodResult(result.to(first.dtype))
    # On the CPU the same arithmetic runs over slices small enough for the float32 working rows to
    # stay in cache: each element gets the same operations in the same order (identical results),
    # about 4x faster than passing whole float32 copies through memory once per input.
    out = torch.empty(first.shape, dtype=first.dtype)
    flat_out, flats = out.view(-1), [t.reshape(-1) for t in tensors]
    n = flat_out.numel()
    acc = torch.empty(min(n, CHUNK), dtype=dtype)
    scratch = torch.empty_like(acc)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        a, tmp = acc[: stop - start], scratch[: stop - start]
        a.copy_(flats[0][start:stop]).mul_(ws[0])
        for flat, weight in zip(flats[1:], ws[1:]):
            a.add_(tmp.copy_(flat[start:stop]), alpha=weight)
        if total is not None:
            a.div_(total)
        flat_out[start:stop].copy_(a)
    return MethodResult(out)


register(MergeMethod(
    name="linear",
    scratch=lambda n, c: 1.2 * c + 1,  # the output, and float32 rows that stay in cache
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
