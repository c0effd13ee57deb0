"""Short names for models that never call two folders by one name."""

from __future__ import annotations

import os
from pathlib import Path


def distinct_labels(labels: dict[str, str]) -> dict[str, str]:
    """Reference -> label, where two different folders with one name (two models called "base") get
    as many parent folders as tell them apart: "runs/base", "hub/base"."""
    groups: dict[str, list[str]] = {}
    for ref, label in labels.items():
        groups.setdefault(label, []).append(ref)
    out = {}
    for label, refs in groups.items():
        places = {ref: _folders_above(ref) for ref in refs}
        depth = _depth_that_tells_apart(list(places.values()))
        for ref in refs:
            out[ref] = "/".join([*places[ref][len(places[ref]) - depth:], label]) if depth else label
    return out


def _folders_above(ref: str) -> tuple[str, ...]:
    """The names of the folders holding `ref` (links resolved: one folder named two ways is one)."""
    path = Path(os.path.realpath(ref) if os.path.exists(ref) else ref)
    return tuple(part for part in path.parent.parts if part != path.anchor)


def _depth_that_tells_apart(places: list[tuple[str, ...]]) -> int:
    """How many trailing parent folders make the places distinct (0: one place, named more ways)."""
    distinct = set(places)
    if len(distinct) < 2:
        return 0
    longest = max(len(p) for p in distinct)
    return next(d for d in range(1, longest + 1) if len({p[len(p) - d:] for p in distinct}) == len(distinct))
