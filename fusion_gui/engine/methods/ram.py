"""RAM (Reinforced Agent Merging) and RAM+ tensor-local: add the models' changes from the base,
averaging each element only over the models that changed it; RAM+ also scales up each model's
unique changes by how much of its change it shares with the others.

Follows mergekit 0.1.5: computed in the dtype of the given tensors with mergekit's operations
in mergekit's order, bit for bit. RAM+'s per-model scale is float32, so for 16-bit inputs
mergekit's sum is float32 and it returns (and, without out_dtype, writes) float32; here the
result is rounded to the input dtype like every method's, which is mergekit's value rounded
once to the output dtype.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from .base import MergeMethod, MethodResult, ParamSpec, register


def ram(tensors: Sequence[torch.Tensor], base_index: int | None, params: Mapping[str, Any],
        per_model: Sequence[Mapping[str, Any]], generator: torch.Generator | None, *,
        plus: bool) -> MethodResult:
    if base_index is None:
        raise InputError("RAM needs a base model.")
    if not tensors[0].is_floating_point():
        raise InputError("RAM can only merge floating-point tensors.")
    base = tensors[base_index]
    others = [t for i, t in enumerate(tensors) if i != base_index]
    if not others:
        return MethodResult(base)
    epsilon = float(params.get("epsilon", 1e-5))
    changes = torch.stack([t - base for t in others], dim=0).view(len(others), -1)
    changed = changes.abs() > epsilon  # which model changed which element
    count = changed.sum(dim=0, keepdim=True)
    shared, unique = count > 1, count == 1
    changes = changes * changed
    averaged = changes * shared / count.clamp(min=1)
    if plus:
        # rho: elements a model shares with others over those it alone changed, capped at
        # alpha; its unique changes are scaled by 1 + r * rho.
        rho = (changed & shared).sum(dim=1) / (changed & unique).sum(dim=1).clamp(min=epsilon)
        scale = 1 + float(params.get("r", 0.1)) * rho.clamp(
            min=0, max=float(params.get("alpha", 0.2)))
        alone = changes * unique * scale.unsqueeze(-1)
    else:
        alone = changes * unique
    mixed = (alone + averaged).sum(dim=0, keepdim=True)
    return MethodResult((base + mixed.reshape_as(base)).to(base.dtype))


_EPSILON = ParamSpec("epsilon", "global", float, 1e-5, minimum=0.0,
                     help="A change counts only where its magnitude exceeds this.")

register(MergeMethod(
    name="ram",
    scratch=lambda n, c: 22 + 4 * c + 3 * (n - 1) * c,  # measured: bench_memory.py --scratch
    pretty_name="Reinforced Agent Merging",
    description="Adds the models' changes, averaging each weight only over the models that "
                "changed it.",
    reference="https://arxiv.org/abs/2601.13572",
    fn=partial(ram, plus=False),
    params=(_EPSILON,),
    base="required",
    min_models=1,
))

register(MergeMethod(
    name="ramplus_tl",
    scratch=lambda n, c: 22 + 4 * c + 3 * (n - 1) * c,  # measured: bench_memory.py --scratch
    pretty_name="Reinforced Agent Merging Plus (Tensor-Local)",
    description="RAM, with each model's unique changes scaled up by how much of its change "
                "it shares with others.",
    reference="https://arxiv.org/abs/2601.13572",
    fn=partial(ram, plus=True),
    params=(
        ParamSpec("r", "global", float, 0.1, 0.0, 1.0,
                  help="Strength of the boost to each model's unique changes."),
        ParamSpec("alpha", "global", float, 0.2, 0.0, 1.0,
                  help="Cap on the shared-to-unique ratio that sets the boost."),
        _EPSILON,
    ),
    base="required",
    min_models=1,
))
