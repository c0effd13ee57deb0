"""Fisher-weighted averaging (Matena & Raffel, 2022): each element is the average of the inputs
weighted by every model's diagonal Fisher information, which the method's prepare step estimates
first on a calibration text (fusion_gui/engine/methods/fisher_prepare.py) and caches.

Follows the paper's code (github.com/mmatena/model_merging, merging.py): merged =
sum_i c_i F_i theta_i / sum_i c_i F_i with c_i = weight_i (divided by the L2 norm of model i's
whole Fisher when normalize is on); F_i is floored at fisher_floor for the first model only
(favor_target, the code's default) or for every model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from .base import MergeMethod, MethodResult, ParamSpec, Preparation, register
from .fisher_prepare import check_fisher, estimate_fishers


def fisher(tensors: Sequence[torch.Tensor], base_index: int | None, params: Mapping[str, Any],
           per_model: Sequence[Mapping[str, Any]], generator: torch.Generator | None) -> MethodResult:
    """tensors: the n inputs' weights, then their n Fishers (same order); per_model[i] carries
    'weight' and 'fisher_norm' (the L2 norm of model i's whole Fisher). Given only the weights,
    every Fisher is one: the paper code's isotropic merge, a weighted average."""
    n = len(per_model)
    weights = tensors[:n]
    fishers = tensors[n:] if len(tensors) == 2 * n else [torch.ones_like(t) for t in weights]
    first = weights[0]
    dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
    floor = float(params.get("fisher_floor", 1e-6))
    favor_target = params.get("favor_target", True)
    coefficients = []
    for p in per_model:
        c = float(p.get("weight", 1.0))
        if params.get("normalize", True):
            norm = float(p.get("fisher_norm", 1.0))
            c /= norm if norm > 0 else 1.0
        coefficients.append(c)
    if sum(coefficients) <= 0:
        raise InputError("The fisher weights sum to zero; give at least one model a positive weight.")
    numerator = torch.zeros(first.shape, dtype=dtype, device=first.device)
    denominator = torch.zeros_like(numerator)
    for i, (theta, f, c) in enumerate(zip(weights, fishers, coefficients)):
        f = f.to(dtype)
        if i == 0 or not favor_target:
            f = f.clamp_min(floor)
        f = f * c
        denominator.add_(f)
        numerator.addcmul_(f, theta.to(dtype))
    # With favor_target and a zero first weight an element can have no Fisher at all: keep the first model's.
    merged = torch.where(denominator > 0, numerator / denominator, first.to(dtype))
    return MethodResult(merged.to(first.dtype))


register(MergeMethod(
    name="fisher",
    pretty_name="Fisher-weighted averaging",
    description="Average weighted per element by each model's diagonal Fisher information, "
                "estimated on a calibration text (and cached).",
    reference="https://arxiv.org/abs/2111.09832",
    fn=fisher,
    params=(
        ParamSpec("weight", "model", float, 1.0, minimum=0.0, applies_to_base=True,
                  help="This model's share, multiplied by its Fisher."),
        ParamSpec("calibration", "global", Path, required=True, per_tensor=False,
                  help="Text file (.txt one document a line, or .jsonl) the Fisher is estimated on."),
        ParamSpec("samples", "global", int, 64, minimum=1, per_tensor=False,
                  help="Blocks of calibration text to estimate on (fewer if the text is short)."),
        ParamSpec("seq_length", "global", int, 256, minimum=2, per_tensor=False, help="Tokens per block."),
        ParamSpec("fisher_floor", "global", float, 1e-6, minimum=0.0,
                  help="Smallest Fisher value used, so no element divides by zero."),
        ParamSpec("normalize", "global", bool, True,
                  help="Scale each model's Fisher to unit L2 norm over all its parameters (the paper's default)."),
        ParamSpec("favor_target", "global", bool, True,
                  help="Floor only the first model's Fisher (the paper's default): where no other model "
                       "has any Fisher, the first model's value is kept; off averages those by weight."),
    ),
    base="none",
    min_models=2,
    prepare=Preparation(check=check_fisher, run=estimate_fishers),
))
