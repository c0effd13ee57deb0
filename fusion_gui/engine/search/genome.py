"""The search space and the recipe of a point in it (mergekit-evolve's genome, in mergekit's own recipe form).

Each tune entry expands to dimensions: scope global is one, model one per input model (the base takes
a model parameter only when the method says so), layer one per layer group (and per model for a model
parameter). A point is a dict {dimension name: value}; `recipe_dict` turns it into a normal merge
recipe: global values in `parameters`, per-model values in `models`, and, with layer groups, one
slice per group (mergekit's slices with layer ranges), so the written merge is the same merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusion_gui.engine.search.settings import SearchSettings


@dataclass(frozen=True)
class Dimension:
    name: str  # e.g. "lambda", "weight/count", "weight/count/g1"
    param: str
    low: float
    high: float
    model: int | None = None  # index into settings.models (None: every model, or a global parameter)
    group: int | None = None  # layer group (None: all layers)
    integer: bool = False
    start: float | None = None  # the first trial's value


def model_names(models: tuple[str, ...]) -> list[str]:
    """Short names for dimension names: folder names, made unique with their parent when needed."""
    names = [Path(m).name or m for m in models]
    return [f"{Path(m).parent.name}/{n}" if names.count(n) > 1 else n for m, n in zip(models, names)]


def layer_groups(n_layers: int, granularity: int) -> list[tuple[int, int]]:
    """[start, end) layer ranges of `granularity` layers each (the last may be shorter)."""
    if granularity < 1:
        return [(0, n_layers)]
    return [(s, min(s + granularity, n_layers)) for s in range(0, n_layers, granularity)]


def dimensions(settings: SearchSettings, n_layers: int) -> list[Dimension]:
    from fusion_gui.engine.methods import get_method

    method = get_method(settings.method)
    labels = model_names(settings.models)
    groups = layer_groups(n_layers, settings.layer_granularity)
    out: list[Dimension] = []
    for t in settings.tune:
        spec = method.param(t.name)
        low = max(t.low, spec.minimum) if spec.minimum is not None else t.low
        high = min(t.high, spec.maximum) if spec.maximum is not None else t.high
        integer = spec.type is int
        per_model = spec.scope == "model" and t.scope != "global"
        models = [(i, f"/{label}") for i, label in enumerate(labels)] if per_model else [(None, "")]
        if t.scope == "layer":
            for i, suffix in models:
                out += [Dimension(f"{t.name}{suffix}/g{g}", t.name, low, high, i, g, integer, t.start)
                        for g in range(len(groups))]
        else:
            out += [Dimension(f"{t.name}{suffix}", t.name, low, high, i, None, integer, t.start)
                    for i, suffix in models]
    return out


def recipe_dict(settings: SearchSettings, dims: list[Dimension], point: dict, n_layers: int) -> dict:
    """The merge recipe (mergekit's YAML as a dict) of one point of the search space."""
    parameters = dict(settings.fixed)
    per_model: list[dict] = [{} for _ in settings.models]
    grouped: list[dict] = [{} for _ in layer_groups(n_layers, settings.layer_granularity)]
    grouped_model: list[list[dict]] = [[{} for _ in settings.models] for _ in grouped]
    for d in dims:
        value = int(round(point[d.name])) if d.integer else float(point[d.name])
        if d.group is None:
            (per_model[d.model] if d.model is not None else parameters)[d.param] = value
        elif d.model is None:
            grouped[d.group][d.param] = value
        else:
            grouped_model[d.group][d.model][d.param] = value
    from fusion_gui.engine.methods import get_method

    recipe = {"merge_method": settings.method, "dtype": settings.dtype}
    if get_method(settings.method).random:  # the same drop masks in memory and in the written merge
        recipe["random_seed"] = settings.seed
    if settings.base:
        recipe["base_model"] = settings.base
    if parameters:
        recipe["parameters"] = parameters
    if not any(grouped) and not any(any(m) for m in grouped_model):
        recipe["models"] = [{"model": m, **({"parameters": p} if p else {})}
                            for m, p in zip(settings.models, per_model)]
        return recipe
    slices = []
    for g, (start, end) in enumerate(layer_groups(n_layers, settings.layer_granularity)):
        sources = [{"model": m, "layer_range": [start, end],
                    **({"parameters": {**per_model[i], **grouped_model[g][i]}}
                       if per_model[i] or grouped_model[g][i] else {})}
                   for i, m in enumerate(settings.models)]
        if settings.base and settings.base not in settings.models:
            sources.append({"model": settings.base, "layer_range": [start, end]})
        slices.append({"sources": sources, **({"parameters": grouped[g]} if grouped[g] else {})})
    recipe["slices"] = slices
    return recipe


def start_point(dims: list[Dimension]) -> dict | None:
    """The first trial, when any tune entry gives a start (the others start in the middle of their bounds)."""
    if all(d.start is None for d in dims):
        return None
    return {d.name: d.start if d.start is not None else (d.low + d.high) / 2 for d in dims}


def recipe_for(settings: SearchSettings, params: dict) -> dict:
    """The merge recipe of a trial's parameters (e.g. a point clicked in the app), reading only the first model's
    headers for its layer count; feed it to merge/recipe.py's recipe_from_dict to open or write it."""
    from fusion_gui.engine.io.opener import open_model
    from fusion_gui.engine.naming import count_layers

    with open_model(settings.models[0]) as reader:
        n_layers = count_layers(reader.tensors)
    return recipe_dict(settings, dimensions(settings, n_layers), params, n_layers)


def grid_points(dims: list[Dimension], steps: int) -> list[dict]:
    """Every point of a 1-D or 2-D grid, coarse first: the ends and the middle, then the points that halve
    the spacing, and so on, so a search stopped early has still covered the whole range."""
    axes = [_coarse_first([d.low + (d.high - d.low) * k / (steps - 1) for k in range(steps)]) for d in dims]
    if len(dims) == 1:
        return [{dims[0].name: v} for v in axes[0]]
    order = sorted(((a, b) for a in range(steps) for b in range(steps)), key=lambda ab: (max(ab), ab))
    return [{dims[0].name: axes[0][a], dims[1].name: axes[1][b]} for a, b in order]


def _coarse_first(values: list[float]) -> list[float]:
    """Values ordered by bisection depth: the two ends, the middle, the quarters, ..."""
    n = len(values)
    order, seen, depth = [], set(), 1
    for i in (0, n - 1):
        order.append(i)
        seen.add(i)
    while len(order) < n:
        for k in range(1, 2 ** depth, 2):
            i = round(k * (n - 1) / 2 ** depth)
            if i not in seen:
                seen.add(i)
                order.append(i)
        depth += 1
    return [values[i] for i in order]
