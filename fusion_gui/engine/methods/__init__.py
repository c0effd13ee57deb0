"""Merge methods: importing this package registers every method."""

from __future__ import annotations

from ..errors import InputError
from . import linear, passthrough, slerp, task_arithmetic  # noqa: F401  (they register)
from . import arcee_fusion, model_stock, nearswap, ram, sce, spherical  # noqa: F401
from . import fisher  # noqa: F401
from .base import MergeMethod, MethodResult, ParamSpec, registry

__all__ = ["MergeMethod", "MethodResult", "ParamSpec", "get_method", "registry"]


def get_method(name: str) -> MergeMethod:
    """The registered method called `name`, or an InputError naming the known ones."""
    try:
        return registry()[name]
    except KeyError:
        known = ", ".join(sorted(registry()))
        raise InputError(f"Unknown merge method '{name}'; known methods are: {known}.") from None
