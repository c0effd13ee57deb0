"""A recipe parameter setting's value for one tensor. A setting is a scalar, a gradient list
(interpolated across layers), a `{filter, value}` mapping or a list of them (first filter that is
a substring of the tensor name wins). Precedence, highest first: a slice source's per-model
parameters (or a `models:` entry's), the slice's parameters, then the recipe's global parameters.
"""

from __future__ import annotations

from typing import Any, Mapping

from fusion_gui.engine.errors import InputError

Setting = Any  # scalar | list[scalar] | {filter, value} | list[{filter, value}]


def evaluate_setting(setting: Setting, tensor_name: str, t: float) -> Any:
    """The value a setting takes for one tensor at layer position t in [0, 1].

    Gradient lists interpolate linearly between neighbouring anchors (value at i/(N-1) is
    anchor i); filters are substrings of the tensor name, first match wins; None when no
    filter matches.
    """
    if isinstance(setting, (bool, int, float, str)):
        return setting
    if isinstance(setting, list) and setting and isinstance(setting[0], dict):
        for cond in setting:
            f = cond.get("filter")
            if f is None or f == "*" or (tensor_name and f in tensor_name):
                return evaluate_setting(cond["value"], tensor_name, t)
        return None
    if isinstance(setting, list):
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in setting)
        if not numeric:
            return setting[int(t * (len(setting) - 1))]
        scaled = t * (len(setting) - 1)
        i0 = int(scaled)
        i1 = min(len(setting) - 1, i0 + 1)
        frac = scaled - i0
        return (1 - frac) * setting[i0] + frac * setting[i1]
    raise InputError(f"Unexpected parameter setting {setting!r}.")


def resolve(scopes: list[Mapping[str, Setting] | None], name: str, tensor_name: str, t: float) -> Any:
    """First non-None value of `name` across scopes given from highest to lowest precedence."""
    for scope in scopes:
        if scope and name in scope:
            value = evaluate_setting(scope[name], tensor_name, t)
            if value is not None:
                return value
    return None
