"""Spherical merges of several models: NuSLERP, Multi-SLERP and the Karcher mean.

Follows mergekit 0.1.5's meaning and numerics: everything is computed in the dtype of the
given tensors (the recipe's dtype), with the same operations in the same order, so results
are mergekit's bit for bit on the same device. The Karcher mean takes its norms in float32
(float64 stays float64) like mergekit.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from .base import MergeMethod, MethodResult, ParamSpec, register


def _split(tensors: Sequence[torch.Tensor], base_index: int | None
           ) -> tuple[torch.Tensor | None, list[int]]:
    """The base tensor (or None) and the indices of the other inputs, in recipe order."""
    others = [i for i in range(len(tensors)) if i != base_index]
    return (tensors[base_index] if base_index is not None else None), others


def _check_float(tensors: Sequence[torch.Tensor], what: str) -> None:
    if not tensors[0].is_floating_point():
        raise InputError(f"{what} can only merge floating-point tensors.")


# ---------------------------------------------------------------------------------- NuSLERP

def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / torch.norm(x, dim=-1, keepdim=True).clamp(min=1e-7)


def nuslerp_vectors(t: float, a: torch.Tensor, b: torch.Tensor, *, row_wise: bool = False,
                    flatten: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Spherical interpolation from a (t=0) to b (t=1) along the last axis of the vectors:
    the whole tensor as one vector (flatten), its columns (row_wise: along dim 0), or its
    rows. (Anti)collinear pairs, where 1 - cos^2 <= eps^2, are interpolated linearly."""
    shape = a.shape
    if flatten:
        a, b = a.reshape(-1), b.reshape(-1)
    elif row_wise:
        a, b = a.transpose(0, -1), b.transpose(0, -1)
    cos = torch.sum(_unit(a) * _unit(b), dim=-1, keepdim=True).clamp(-1, 1)
    straight = (1 - cos.square()) <= eps ** 2
    theta = torch.acos(torch.where(straight, 0, cos))  # finite where we lerp instead
    curved = (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)
    out = torch.where(straight, (1 - t) * a + t * b, curved)
    if row_wise and not flatten:
        out = out.transpose(0, -1)
    return out.reshape(shape)


def nuslerp(tensors: Sequence[torch.Tensor], base_index: int | None, params: Mapping[str, Any],
            per_model: Sequence[Mapping[str, Any]], generator: torch.Generator | None
            ) -> MethodResult:
    _check_float(tensors, "NuSLERP")
    base, others = _split(tensors, base_index)
    if len(others) != 2:
        raise InputError(f"NuSLERP needs exactly two models besides the base, got {len(others)}.")
    w0, w1 = (float(per_model[i]["weight"]) for i in others)
    total = w0 + w1
    t = 0.5 if abs(total) < 1e-6 else w1 / total  # the second model's share
    a, b = tensors[others[0]], tensors[others[1]]
    kw = dict(row_wise=bool(params.get("nuslerp_row_wise", False)),
              flatten=bool(params.get("nuslerp_flatten", True)))
    if base is None:
        return MethodResult(nuslerp_vectors(t, a, b, **kw))
    # With a base, interpolate the two task vectors and add the result to the base.
    return MethodResult(base + nuslerp_vectors(t, a - base, b - base, **kw))


register(MergeMethod(
    name="nuslerp",
    scratch=lambda n, c: 4 * (n + 4),  # measured: bench_memory.py --scratch
    pretty_name="NuSLERP",
    description="Spherical interpolation of two models (or of their changes from a base), "
                "by relative weight.",
    reference="https://github.com/arcee-ai/mergekit",
    fn=nuslerp,
    params=(
        ParamSpec("weight", "model", float, required=True, minimum=0.0, maximum=10.0,
                  help="Relative weight; t is the second model's share of the two weights."),
        ParamSpec("nuslerp_row_wise", "global", bool, False,
                  help="Without flattening: interpolate column vectors (dim 0), not rows."),
        ParamSpec("nuslerp_flatten", "global", bool, True,
                  help="Treat each whole tensor as one vector (as classic SLERP)."),
    ),
    base="optional",
    min_models=2,  # two models, plus the base when there is one
    max_models=3,
))


# ------------------------------------------------------------------------------ Multi-SLERP

def multislerp(tensors: Sequence[torch.Tensor], base_index: int | None,
               params: Mapping[str, Any], per_model: Sequence[Mapping[str, Any]],
               generator: torch.Generator | None) -> MethodResult:
    _check_float(tensors, "Multi-SLERP")
    base, others = _split(tensors, base_index)
    if not others:
        raise InputError("Multi-SLERP needs at least one model besides the base.")
    if len(others) == 1:
        return MethodResult(tensors[others[0]])  # nothing to interpolate
    eps = float(params.get("eps", 1e-8))
    points = torch.stack([tensors[i] for i in others], dim=0)
    if base is not None:
        points -= base
    flat = points.view(len(others), -1)
    weights = torch.tensor([float(per_model[i]["weight"]) for i in others],
                           dtype=points.dtype, device=points.device)
    if params.get("normalize_weights", True):
        weights = weights / weights.sum()
    column = weights.view(-1, 1)

    # Barycentre on the unit sphere: project every point onto it, take the weighted mean
    # direction, average in the tangent space there, and map back with the exponential map.
    norms = torch.norm(flat, dim=-1, keepdim=True)
    units = flat / (norms + eps)
    centre = (units * column).sum(0)
    centre_norm = torch.norm(centre)
    if centre_norm < eps:
        if len(others) == 2:  # two opposite points: linear interpolation instead
            mixed = (points[0] * weights[0] + points[1] * weights[1]).view(points.shape[1:])
            return MethodResult(mixed if base is None else mixed + base)
        raise InputError("Multi-SLERP: the weighted directions of the models cancel out "
                         "(opposite tensors with balancing weights); change the weights.")
    centre = centre / centre_norm
    along = (units * centre).sum(-1, keepdim=True)
    tangent = ((units - along * centre) * column).sum(0)
    length = torch.norm(tangent) + eps
    direction = centre * torch.cos(length) + tangent * (torch.sin(length) / length)
    out = (direction * (norms.squeeze(-1) * weights).sum()).view(points.shape[1:])
    return MethodResult(out if base is None else out + base)


register(MergeMethod(
    name="multislerp",
    scratch=lambda n, c: 8 + 14 * n,  # measured: bench_memory.py --scratch
    pretty_name="Multi-SLERP",
    description="Weighted spherical average of any number of models (or of their changes "
                "from a base).",
    reference="https://goddard.blog/posts/multislerp-wow-what-a-cool-idea",
    fn=multislerp,
    params=(
        ParamSpec("weight", "model", float, required=True, minimum=0.0, maximum=10.0,
                  help="This model's weight in the spherical average."),
        ParamSpec("normalize_weights", "global", bool, True,
                  help="Divide the weights by their sum."),
        ParamSpec("eps", "global", float, 1e-8, minimum=0.0,
                  help="Small constant that keeps the divisions by norms finite."),
    ),
    base="optional",
    min_models=1,
))


# ----------------------------------------------------------------------------- Karcher mean

def karcher_mean(tensors: Sequence[torch.Tensor], alphas: Sequence[float], max_iter: int = 10,
                 tol: float = 1e-5) -> torch.Tensor:
    """Weighted Riemannian (Karcher) mean of the tensors' directions on the unit sphere,
    by at most max_iter gradient steps, scaled by the weighted mean of their norms."""
    if len(tensors) == 1:
        return tensors[0]
    norm_dtype = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
    norms = [torch.linalg.vector_norm(x.to(norm_dtype)) for x in tensors]
    # Directions of the inputs with a norm above tol (zero tensors have none).
    live = [i for i, n in enumerate(norms) if n.item() > tol]
    if not live:
        return torch.zeros_like(tensors[0])
    total = sum(alphas[i] for i in live)
    weights = [alphas[i] / total for i in live]
    units = [(tensors[i] / norms[i]).to(tensors[i].dtype) for i in live]

    mean = torch.zeros_like(units[0])
    for w, u in zip(weights, units):
        mean += w * u
    size = torch.linalg.vector_norm(mean.to(norm_dtype))
    mean = units[0].clone() if size.item() < tol else (mean / size).to(mean.dtype)

    for _ in range(max_iter):
        # Riemannian gradient: the weighted mean of the log maps of the points at `mean`.
        step = torch.zeros_like(mean)
        for w, u in zip(weights, units):
            cos = torch.clamp(torch.dot(mean.flatten(), u.flatten()), -1.0, 1.0)
            angle = torch.arccos(cos)
            if angle.item() < tol:
                continue
            step += w * (angle / torch.sin(angle)) * (u - cos * mean)
        length = torch.linalg.vector_norm(step.to(norm_dtype))
        if length.item() < tol:
            break
        mean = (torch.cos(length) * mean + torch.sin(length) * (step / length)).to(mean.dtype)
        size = torch.linalg.vector_norm(mean.to(norm_dtype))
        if size.item() > tol:
            mean = (mean / size).to(mean.dtype)

    scale = sum(a * n for a, n in zip(alphas, norms))  # every input's norm counts here
    # (a 0-dim float32 scale times a 0-dim 16-bit mean promotes to float32: round it back)
    return (scale * mean).to(tensors[0].dtype)


def karcher(tensors: Sequence[torch.Tensor], base_index: int | None, params: Mapping[str, Any],
            per_model: Sequence[Mapping[str, Any]], generator: torch.Generator | None
            ) -> MethodResult:
    _check_float(tensors, "The Karcher mean")
    n = len(tensors)
    return MethodResult(karcher_mean(tensors, [1.0 / n] * n, int(params.get("max_iter", 10)),
                                     float(params.get("tol", 1e-5))))


register(MergeMethod(
    name="karcher",
    scratch=lambda n, c: 24 + 4 * n,  # measured: bench_memory.py --scratch
    pretty_name="Karcher Mean",
    description="Riemannian mean of all models' weight directions on the sphere, equal "
                "weights (a base model counts as one more input).",
    reference="https://arxiv.org/abs/2603.04972",
    fn=karcher,
    params=(
        ParamSpec("max_iter", "global", int, 10, 1, 100,
                  help="Most iterations of the mean's gradient descent."),
        ParamSpec("tol", "global", float, 1e-5, minimum=0.0,
                  help="Stop when a step is shorter than this (also the smallest usable norm)."),
    ),
    base="none",
    min_models=1,
))
