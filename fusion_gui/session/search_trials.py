"""One trial of a search as the Search tab shows it (numbers only: the engine's events and its storage
listing both map to it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrialRow:
    """One trial as the views show it: numbers only (the storage and the events both map to it)."""

    number: int
    params: dict = field(default_factory=dict)  # parameter key -> value
    scores: tuple = ()  # one per objective (None: not scored yet or failed)
    held_out: tuple = ()  # the same objectives re-scored on held-out examples (empty until then)
    state: str = "complete"  # "running" | "complete" | "failed" | "pruned"
    seconds: float | None = None
    worker: str = ""
    error: str = ""  # why a failed trial failed, one sentence

    @property
    def done(self) -> bool:
        return self.state == "complete" and bool(self.scores) and all(_finite(s) for s in self.scores)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
