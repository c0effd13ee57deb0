"""The search settings file (YAML): what to merge, what to tune within which bounds, what to score, how long.

The app writes the same file the command line reads (`fusion-gui search SEARCH.yml OUT_DIR`):

    method: task_arithmetic
    base: demo/base
    models: [demo/count, demo/reverse]
    fixed: {}                      # method parameters kept at one value (recipe `parameters:`)
    tune:                          # scope: global | model (one per model) | layer (per layer group)
      - {name: weight, scope: model, low: 0.0, high: 1.5, start: 0.8}   # start: optional first trial
    layer_granularity: 0           # layers per group for scope `layer` (mergekit-evolve's genome); 0: none
    objectives: [count, reverse]   # demo skills, perplexity ({task: perplexity, file: text.txt}),
                                   # or a task file ({task: qa.jsonl, metric: acc_norm}); one or two
    combine: pareto                # two objectives: pareto (a front) or mean (one number)
    examples: 40                   # search examples per objective
    held_out: 60                   # examples the search never sees, for re-scoring the best
    budget: {trials: 100, seconds: 600}   # trials: the whole study's; seconds: this run's (a resume gets more)
    sampler: cmaes                 # cmaes | grid | nsga2 | tpe | random (default: cmaes, nsga2 for a front)
    grid_steps: 5
    storage: null                  # an optuna RDB URL; default: sqlite file in the output folder
    study_name: search
    seed: 0
    device: auto

Every check that needs no model runs in `check_settings`: one sentence per problem (InputError).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.parse_text import load_yaml, read_text

SCOPES = ("global", "model", "layer")
SAMPLERS = ("cmaes", "grid", "nsga2", "tpe", "random")
SKILLS = ("count", "reverse")  # the demo skills (engine/evaluate/demo.py); kept here so reading needs no torch
TASK_FILE_SUFFIXES = (".jsonl", ".json")


@dataclass(frozen=True)
class Tuned:
    """One method parameter to tune, within [low, high]; `start` (optional) is the first trial's value, e.g.
    a known good recipe's, so the best found is never worse on the search examples (CMA-ES itself starts
    from the middle of the bounds)."""

    name: str
    scope: str = "model"
    low: float = 0.0
    high: float = 1.0
    start: float | None = None


@dataclass(frozen=True)
class Objective:
    """What to score: a demo skill, "perplexity" on a text file, or a task file (with its metric)."""

    task: str
    file: str | None = None  # perplexity's text file
    metric: str | None = None  # task files: acc, acc_norm (multiple choice) or exact_match

    @property
    def name(self) -> str:
        if self.task == "perplexity" or _is_text(self.task):
            return "perplexity"
        if self.task in SKILLS:
            return self.task
        stem = Path(self.task).stem
        return f"{stem}/{self.metric}" if self.metric else stem

    @property
    def maximize(self) -> bool:
        return self.name != "perplexity"


@dataclass(frozen=True)
class SearchSettings:
    method: str
    models: tuple[str, ...]
    tune: tuple[Tuned, ...]
    objectives: tuple[Objective, ...]
    base: str | None = None
    fixed: dict = field(default_factory=dict)
    dtype: str = "float32"
    layer_granularity: int = 0
    combine: str = "pareto"
    examples: int = 40
    held_out: int = 60
    trials: int | None = 100
    seconds: float | None = None
    sampler: str | None = None
    grid_steps: int = 5
    storage: str | None = None
    study_name: str = "search"
    seed: int = 0
    device: str = "auto"
    rescore: int = 3  # best candidates re-scored on the held-out examples (one objective)
    max_failures: int = 3  # failed trials in a row that stop the search

    @property
    def pareto(self) -> bool:
        return len(self.objectives) == 2 and self.combine == "pareto"

    @property
    def chosen_sampler(self) -> str:
        return self.sampler or ("nsga2" if self.pareto else "cmaes")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["models"] = list(self.models)
        data["tune"] = [{k: v for k, v in asdict(t).items() if v is not None} for t in self.tune]
        data["objectives"] = [{k: v for k, v in asdict(o).items() if v is not None} for o in self.objectives]
        data["budget"] = {"trials": data.pop("trials"), "seconds": data.pop("seconds")}
        return data


def _is_text(task: str) -> bool:
    return Path(task).suffix.lower() in (".txt", ".md", ".text")


def settings_from_dict(data: Any, where: str = "The search settings") -> SearchSettings:
    """Settings from a parsed YAML mapping; unknown keys and wrong types are one sentence each."""
    if not isinstance(data, dict):
        raise InputError(f"{where} must be a mapping of keys (method, models, tune, objectives, ...).")
    data = dict(data)
    budget = data.pop("budget", None) or {}
    if not isinstance(budget, dict):
        raise InputError(f"{where}: budget must be a mapping like {{trials: 100, seconds: 600}}.")
    unknown_budget = set(budget) - {"trials", "seconds"}
    if unknown_budget:
        raise InputError(f"{where}: unknown budget key {sorted(unknown_budget)[0]!r}; use trials and seconds.")
    data.update(budget)
    known = {f.name for f in fields(SearchSettings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}, budget.")
    for key in ("method", "models", "tune", "objectives"):
        if not data.get(key):
            raise InputError(f"{where} needs {key!r}.")
    if not isinstance(data["models"], list) or not all(isinstance(m, str) for m in data["models"]):
        raise InputError(f"{where}: models must be a list of model folders.")
    data["models"] = tuple(data["models"])
    data["tune"] = tuple(_tuned(t, where) for t in _as_list(data["tune"], "tune", where))
    data["objectives"] = tuple(_objective(o, where) for o in _as_list(data["objectives"], "objectives", where))
    if data.get("fixed") is None:
        data["fixed"] = {}
    try:
        return SearchSettings(**data)
    except TypeError as err:
        raise InputError(f"{where}: {err}.") from None


def _as_list(value: Any, key: str, where: str) -> list:
    if not isinstance(value, list):
        raise InputError(f"{where}: {key} must be a list.")
    return value


def _tuned(item: Any, where: str) -> Tuned:
    if not isinstance(item, dict) or "name" not in item:
        raise InputError(f"{where}: each tune entry is a mapping like {{name: weight, scope: model, low: 0, high: 1}}.")
    extra = set(item) - {"name", "scope", "low", "high", "start"}
    if extra:
        raise InputError(f"{where}: tune entry {item['name']!r} has unknown key {sorted(extra)[0]!r}.")
    try:
        start = item.get("start")
        return Tuned(str(item["name"]), str(item.get("scope", "model")), float(item.get("low", 0.0)),
                     float(item.get("high", 1.0)), None if start is None else float(start))
    except (TypeError, ValueError):
        raise InputError(f"{where}: tune entry {item['name']!r} needs numbers for low, high and start.") from None


def _objective(item: Any, where: str) -> Objective:
    if isinstance(item, str):
        return Objective(item)
    if not isinstance(item, dict) or "task" not in item or set(item) - {"task", "file", "metric"}:
        raise InputError(f"{where}: each objective is a task name or a mapping like "
                         f"{{task: perplexity, file: text.txt}} or {{task: qa.jsonl, metric: acc_norm}}.")
    return Objective(str(item["task"]), item.get("file"), item.get("metric"))


def load_settings(path: str | Path) -> SearchSettings:
    path = Path(path)
    settings = settings_from_dict(load_yaml(read_text(path, "Search settings file"), f"Search settings file '{path}'"),
                                  f"Search settings file '{path}'")
    return _relative_to(settings, path.parent)


def _relative_to(settings: SearchSettings, folder: Path) -> SearchSettings:
    """Relative model and data paths are read from the settings file's folder, as a recipe's are not:
    a search file usually sits beside its data. A name that exists from the working folder wins."""
    def fix(p: str | None) -> str | None:
        if p is None:
            return p
        for found in (Path(p).expanduser(), folder / p):
            if found.exists():  # absolute, so the best recipe written elsewhere still finds it
                return str(found.absolute())
        return p  # a hub id, or a missing path the merge names

    objectives = tuple(replace(o, task=fix(o.task) if o.task not in SKILLS and o.task != "perplexity" else o.task,
                               file=fix(o.file)) for o in settings.objectives)
    return replace(settings, base=fix(settings.base), models=tuple(fix(m) for m in settings.models),
                   objectives=objectives)


def dump_settings(settings: SearchSettings) -> str:
    return yaml.safe_dump(settings.to_dict(), sort_keys=False)


def save_settings(settings: SearchSettings, path: str | Path) -> None:
    Path(path).write_text(dump_settings(settings), encoding="utf-8")


def check_settings(settings: SearchSettings) -> None:
    """Every check that needs no model or data loaded: one InputError sentence for the first problem."""
    from fusion_gui.engine.methods import get_method

    s = settings
    method = get_method(s.method)
    tunable = [p for p in method.params if p.type in (float, int)]
    if not tunable:
        raise InputError(f"The {s.method} method has no numeric parameters to tune; choose another method.")
    if method.prepare is not None:
        raise InputError(f"The {s.method} method estimates from data before it merges; search cannot run it in "
                         f"memory yet.")
    if method.base == "required" and not s.base:
        raise InputError(f"The {s.method} method needs a base model: set `base:`.")
    for t in s.tune:
        spec = method.param(t.name)
        if spec is None or spec not in tunable:
            names = ", ".join(p.name for p in tunable)
            raise InputError(f"The {s.method} method has no numeric parameter {t.name!r} to tune; it has: {names}.")
        if t.scope not in SCOPES:
            raise InputError(f"Tune entry {t.name!r}: scope must be one of {', '.join(SCOPES)}, not {t.scope!r}.")
        if t.scope == "model" and spec.scope == "global":
            raise InputError(f"Parameter {t.name!r} of {s.method} is one value for the whole merge: tune it with "
                             f"scope global or layer.")
        low = max(t.low, spec.minimum) if spec.minimum is not None else t.low
        high = min(t.high, spec.maximum) if spec.maximum is not None else t.high
        if not low < high:
            valid = f"[{spec.minimum if spec.minimum is not None else '-inf'}, " \
                    f"{spec.maximum if spec.maximum is not None else 'inf'}]"
            raise InputError(f"Tune entry {t.name!r}: bounds [{t.low}, {t.high}] leave no valid value "
                             f"(the parameter takes {valid}, and low must be below high).")
        if t.start is not None and not low <= t.start <= high:
            raise InputError(f"Tune entry {t.name!r}: start {t.start} is outside its bounds [{low}, {high}].")
        if t.scope == "layer" and s.layer_granularity < 1:
            raise InputError(f"Tune entry {t.name!r} has scope layer: set layer_granularity (layers per group) to 1 "
                             f"or more.")
    if not 1 <= len(s.objectives) <= 2:
        raise InputError(f"A search has one or two objectives, not {len(s.objectives)}.")
    for o in s.objectives:
        _check_objective(o)
    if s.combine not in ("pareto", "mean"):
        raise InputError(f"combine must be pareto or mean, not {s.combine!r}.")
    if len(s.objectives) == 2 and s.combine == "mean" and len({o.maximize for o in s.objectives}) > 1:
        raise InputError("combine: mean needs two objectives that are both maximized (not perplexity with a score).")
    if s.chosen_sampler not in SAMPLERS:
        raise InputError(f"Unknown sampler {s.chosen_sampler!r}; use one of {', '.join(SAMPLERS)}.")
    if s.chosen_sampler == "cmaes" and s.pareto:
        raise InputError("CMA-ES optimizes one value: for two objectives use sampler nsga2, or combine: mean.")
    if s.trials is None and s.seconds is None and s.chosen_sampler != "grid":
        raise InputError("Give the search a budget: trials, seconds, or both.")
    if (s.trials is not None and s.trials < 1) or (s.seconds is not None and s.seconds <= 0):
        raise InputError("The budget must allow at least one trial (trials >= 1, seconds > 0).")
    if s.examples < 1 or s.held_out < 1:
        raise InputError("examples and held_out must both be 1 or more.")
    if s.grid_steps < 2:
        raise InputError("grid_steps must be 2 or more.")


def _check_objective(o: Objective) -> None:
    if o.task in SKILLS:
        return
    if o.task == "perplexity" or _is_text(o.task):
        text = o.file if o.task == "perplexity" else o.task
        if not text:
            raise InputError("The perplexity objective needs a text file: {task: perplexity, file: text.txt}.")
        if not Path(text).expanduser().is_file():
            raise InputError(f"The perplexity objective's text file {text} does not exist.")
        return
    if Path(o.task).suffix.lower() not in TASK_FILE_SUFFIXES:
        raise InputError(f"Objective {o.task!r} is no task: use count, reverse, perplexity or a .jsonl task file.")
    if not Path(o.task).expanduser().is_file():
        raise InputError(f"The objective's task file {o.task} does not exist.")
    if o.metric not in (None, "acc", "acc_norm", "exact_match"):
        raise InputError(f"Objective {o.task}: metric must be acc, acc_norm or exact_match, not {o.metric!r}.")
