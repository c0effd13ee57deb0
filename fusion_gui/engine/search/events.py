"""Events a merge search yields (frozen dataclasses, plain numbers: no torch, no Qt), and its result.

The app draws them live (score per trial, best so far, the Pareto front); the command line prints one
line per trial. Scores are in the objectives' order (settings.objectives); `values` is what the
optimizer sees (one number, or two for a Pareto search).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SearchStarted:
    """First event once the study is open: what the plots' axes and the trials table need."""

    storage: str  # the optuna storage URL: study.list_trials(storage, study_name) lists every worker's trials
    study_name: str
    dimensions: tuple[str, ...]  # parameter names, e.g. ("weight/count/g0", "weight/count/g1", ...)
    objectives: tuple[str, ...]  # e.g. ("count", "reverse")
    maximize: tuple[bool, ...]  # per objective
    pareto: bool  # two objectives kept apart (a front), not one value
    trials_so_far: int  # trials already in the study (resume, or other workers)


@dataclass(frozen=True)
class TrialStarted:
    number: int  # the study's trial number (unique across workers)
    params: dict  # parameter name -> value, e.g. {"weight/count": 0.8, "lambda": 1.1}


@dataclass(frozen=True)
class TrialFinished:
    number: int
    params: dict
    scores: dict  # objective name -> score on the search examples, e.g. {"count": 0.9}
    values: tuple[float, ...]  # what the optimizer was told (one value, or two for a Pareto search)
    seconds: float  # merge in memory + evaluation
    state: str = "complete"  # "complete" | "failed"
    error: str = ""  # why a failed trial failed, one sentence


@dataclass(frozen=True)
class BestSoFar:
    number: int
    params: dict
    scores: dict
    value: float  # the optimizer's value (for a mean of two objectives: the mean)


@dataclass(frozen=True)
class ParetoFront:
    """The trials no other trial beats on both objectives (two-objective searches)."""

    numbers: tuple[int, ...]
    scores: tuple[dict, ...]


@dataclass(frozen=True)
class HeldOutScore:
    """A best candidate re-scored on examples the search never saw; both numbers, for the table."""

    number: int
    params: dict
    search: dict  # objective -> score on the search examples
    held_out: dict  # objective -> score on the held-out examples


@dataclass(frozen=True)
class SearchStopped:
    reason: str  # "budget" | "time" | "grid done" | "cancelled" | "paused" | "failures"
    message: str  # one sentence for the user


@dataclass(frozen=True)
class SearchResult:
    out_dir: str
    storage: str
    study_name: str
    stopped: SearchStopped
    trials: int  # complete trials in the study (all workers)
    best: tuple[HeldOutScore, ...] = ()  # the best candidate (or the Pareto front), re-scored held out
    recipe_file: str | None = None  # the best recipe, a normal merge recipe (None when nothing completed)
    trials_csv: str | None = None
    seconds: float = 0.0
    peak_bytes: int | None = None
    recipe_text: str = ""  # the best recipe's YAML, as written
    extra: dict = field(default_factory=dict)
