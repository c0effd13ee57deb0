"""The Search tab's session: the search settings (the YAML mapping `fusion-gui search` reads) and the
trials seen so far, behind intent methods that emit once.

Qt-free (psygnal). Trials arrive from the running search's events and from polling the study's
storage (other workers), in any order and more than once: `add_trials` keeps one row per trial
number and emits only the rows that changed, so views update incrementally. Best so far and the
Pareto front are computed here, from plain numbers, so they are tested without Qt.
"""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

from psygnal import Signal

from fusion_gui.engine.errors import InputError
from fusion_gui.session.search_trials import TrialRow

# the sampler choices the form offers (None: CMA-ES for one value, NSGA-II for a Pareto front)
SAMPLERS = {None: "Automatic (CMA-ES; NSGA-II for a front)", "cmaes": "CMA-ES", "grid": "Grid (1-D or 2-D)",
            "nsga2": "NSGA-II", "tpe": "TPE", "random": "Random"}
SCOPES = {"global": "global", "model": "per model", "layer": "layer groups"}  # how the form names each scope


def default_settings() -> dict:
    """The settings file's keys (engine/search/settings.py) with their defaults; what the form starts from."""
    return {"method": "", "base": None, "models": [], "fixed": {}, "dtype": "float32", "tune": [],
            "layer_granularity": 0, "objectives": [], "combine": "pareto", "examples": 40, "held_out": 60,
            "budget": {"trials": 100, "seconds": 600.0}, "sampler": None, "grid_steps": 5, "storage": None,
            "study_name": "search", "seed": 0, "device": "auto", "rescore": 3, "max_failures": 3}


def objective_of(item):
    """The engine's Objective for a settings entry (a task name or a {task, file, metric} mapping)."""
    from fusion_gui.engine.search.settings import _objective

    return _objective(item, "The search settings")


def pareto_front(points: list[tuple[int, tuple]], maximize: tuple[bool, ...]) -> list[int]:
    """Numbers of the trials no other trial beats on both objectives (ties kept): one sweep, O(n log n)."""
    signed = sorted(((tuple(v if up else -v for v, up in zip(vals[:2], maximize)), n) for n, vals in points),
                    key=lambda item: (-item[0][0], -item[0][1]))
    front, best_second, best_first = [], -math.inf, None
    for (first, second), n in signed:
        # beaten: someone with a first objective at least as good has a strictly better second, or
        # an equal second and a strictly better first
        if second > best_second or (second == best_second and first == best_first):
            front.append(n)
            if second > best_second:
                best_second, best_first = second, first
    return front


def param_curves(params: dict) -> dict[str, list[float]]:
    """A trial's parameters as curves over the layer groups: "weight/count/g0", "weight/count/g1", ... become
    one curve "weight/count"; a parameter without groups is one value (a flat line)."""
    grouped: dict[str, dict[int, float]] = {}
    for key, value in params.items():
        name, _, last = key.rpartition("/")
        if name and last[:1] == "g" and last[1:].isdigit():
            grouped.setdefault(name, {})[int(last[1:])] = float(value)
        else:
            grouped.setdefault(key, {})[0] = float(value)
    return {name: [groups[g] for g in sorted(groups)] for name, groups in sorted(grouped.items())}


def _current_value(state, name: str) -> float | None:
    """The Merge view's one value of a parameter (global, or the same for every model), else None."""
    values = {state.parameters.get(name)} if name in (state.parameters or {}) else {
        (m.parameters or {}).get(name) for m in state.models}
    value = values.pop() if len(values) == 1 else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class SearchSession:
    settings_changed = Signal(object)  # origin: the view that asked, or None
    trials_added = Signal(list)  # the TrialRows new or changed since the last emission
    trials_cleared = Signal()
    message = Signal(str)

    def __init__(self) -> None:
        self.settings = default_settings()
        self.out_dir = ""
        self.trials: dict[int, TrialRow] = {}
        self.trials_settings: dict | None = None  # the settings the trials shown ran with (the form may move on)

    # --- settings --------------------------------------------------------------------------
    @property
    def objectives(self) -> list[str]:
        """The objectives' names, as the scores and the table's columns name them."""
        try:
            return [objective_of(o).name for o in self.settings.get("objectives") or []]
        except InputError:
            return []

    @property
    def maximize(self) -> tuple[bool, ...]:
        try:
            return tuple(objective_of(o).maximize for o in self.settings.get("objectives") or [])
        except InputError:
            return ()

    def set_budget(self, origin: object = None, **budget) -> None:
        self.set("budget", {**self.settings["budget"], **budget}, origin)

    def set(self, key: str, value, origin: object = None) -> None:
        if key not in default_settings():
            raise InputError(f"Unknown search setting '{key}'.")
        if self.settings.get(key) != value:
            self.settings[key] = copy.deepcopy(value)
            self.settings_changed.emit(origin)

    def replace_settings(self, settings: dict, origin: object = None) -> None:
        from dataclasses import fields

        from fusion_gui.engine.search.settings import SearchSettings

        merged = {**default_settings(), **copy.deepcopy(settings)}
        known = set(default_settings()) | {f.name for f in fields(SearchSettings)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise InputError(f"Unknown search setting{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}.")
        if merged != self.settings:
            self.settings = merged
            self.settings_changed.emit(origin)

    def copy_from_merge(self, merge, origin: object = None) -> list[str]:
        """The Merge view's models, base, method, dtype and fixed global values become what the search
        merges. Returns the names of the method's numeric parameters (what can be tuned)."""
        state = merge.state
        if not state.model_refs():
            raise InputError("The Merge view has no models: add models there (or press “Try the demo”) first.")
        if state.uses_slices:
            raise InputError("The Merge view's recipe uses slices; a search merges whole models: remove the slices.")
        method = merge.method()
        numeric = [p.name for p in (method.params if method is not None else ()) if p.type in (int, float)]
        if not numeric:
            raise InputError(f"The merge method {state.method} has no numeric parameters to tune.")
        tune = [t for t in self.settings.get("tune", []) if t.get("name") in numeric]
        if not tune:  # a useful start: every model's weight (else the first numeric parameter)
            name = "weight" if "weight" in numeric else numeric[0]
            spec = next(p for p in method.params if p.name == name)
            tune = [{"name": name, "scope": "model" if spec.scope == "model" else "global", "low": 0.0,
                     "high": float(spec.maximum if spec.maximum is not None else 1.5), "start": None}]
        tune = [{**t, "start": _current_value(state, t["name"])} for t in tune]  # the first trial: this recipe
        tuned = {t["name"] for t in tune}
        fixed = {k: v for k, v in (state.parameters or {}).items()
                 if k not in tuned and not isinstance(v, (list, dict))}  # gradients and filters: not in `fixed`
        models = [m.model for m in state.models]
        self.replace_settings({**self.settings, "method": state.method, "base": state.base_model, "models": models,
                               "fixed": fixed, "dtype": state.dtype or "float32", "tune": tune}, origin)
        return numeric

    def load_file(self, path: str | Path, origin: object = None) -> None:
        """Read with the engine's reader (as `fusion-gui search` does); all or nothing."""
        from fusion_gui.engine.search.settings import load_settings

        self.replace_settings(load_settings(path).to_dict(), origin)

    def dump(self) -> str:
        import yaml

        return yaml.safe_dump(self.settings, sort_keys=False, allow_unicode=True)

    def save_file(self, path: str | Path) -> Path:
        path = Path(path)
        try:
            path.write_text(self.dump(), encoding="utf-8")
        except OSError as err:
            raise InputError(f"Cannot write '{path}': {err.strerror or err}.") from err
        return path

    def storage_path(self) -> str:
        """Where the study lives: the setting, else a SQLite file in the output folder ("" without one)."""
        if self.settings.get("storage"):
            return str(self.settings["storage"])
        return f"sqlite:///{Path(self.out_dir).expanduser().absolute() / 'search.sqlite'}" if self.out_dir else ""

    def trials_left(self) -> int | None:
        """Trials the budget still allows, counted as the engine counts them (every trial started,
        whatever became of it, but not grid points still queued); None without a trial budget."""
        budget = (self.settings.get("budget") or {}).get("trials")
        if not budget:
            return None
        return max(0, int(budget) - sum(1 for t in self.trials.values() if t.state != "waiting"))

    # --- trials ----------------------------------------------------------------------------
    def clear_trials(self) -> None:
        self.trials = {}
        self.trials_cleared.emit()

    def add_trials(self, rows) -> list[TrialRow]:
        """Upsert rows by trial number and emit the ones that changed. A finished row is never replaced by
        a late running copy; what one source lacks (held-out scores from events, the worker from the
        storage) is kept from the other, so polling the storage re-emits nothing that is already shown."""
        changed = []
        for row in rows:
            old = self.trials.get(row.number)
            if old is not None:
                if old.state != "running" and row.state == "running":
                    continue
                row = TrialRow(**{**row.__dict__, "held_out": row.held_out or old.held_out,
                                  "worker": row.worker or old.worker,
                                  "seconds": old.seconds if old.seconds is not None else row.seconds})
                if row == old:
                    continue
            self.trials[row.number] = row
            changed.append(row)
        if changed:
            self.trials_added.emit(changed)
        return changed

    def set_held_out(self, number: int, scores: tuple) -> None:
        """A trial re-scored on the held-out examples (the best candidates, after the search)."""
        old = self.trials.get(number)
        if old is not None and tuple(scores) != old.held_out:
            self.add_trials([TrialRow(**{**old.__dict__, "held_out": tuple(scores)})])

    def ordered(self) -> list[TrialRow]:
        return [self.trials[n] for n in sorted(self.trials)]

    def best(self, objective: int = 0) -> TrialRow | None:
        done = [t for t in self.ordered() if t.done and len(t.scores) > objective]
        if not done:
            return None
        up = self.maximize[objective] if objective < len(self.maximize) else True
        return (max if up else min)(done, key=lambda t: t.scores[objective])

    def best_so_far(self, objective: int = 0) -> list[tuple[int, float]]:
        """(trial number, best score up to it) for each finished trial, in trial order."""
        up = self.maximize[objective] if objective < len(self.maximize) else True
        out, best = [], None
        for t in self.ordered():
            if not t.done or len(t.scores) <= objective:
                continue
            value = t.scores[objective]
            best = value if best is None or (value > best if up else value < best) else best
            out.append((t.number, best))
        return out

    def front(self) -> list[int]:
        """The Pareto front of two objectives (trial numbers), by the first objective."""
        if len(self.objectives) < 2:
            return []
        points = [(t.number, t.scores[:2]) for t in self.ordered() if t.done and len(t.scores) >= 2]
        numbers = pareto_front(points, self.maximize[:2])
        return sorted(numbers, key=lambda n: self.trials[n].scores[0])

    def param_keys(self) -> list[str]:
        return sorted({k for t in self.trials.values() for k in t.params})

    # --- recipes and export ----------------------------------------------------------------
    def recipe_of(self, number: int):
        """The Recipe of a trial, built from its parameters as the engine merged it."""
        trial = self.trials.get(number)
        if trial is None:
            raise InputError(f"There is no trial {number} in this search.")
        from fusion_gui.session.search_engine import recipe_for_params

        return recipe_for_params(self.trials_settings or self.settings, trial.params)

    def write_recipe(self, number: int, path: str | Path) -> Path:
        from fusion_gui.engine.merge.recipe import dump_recipe

        text = dump_recipe(self.recipe_of(number))
        path = Path(path)
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as err:
            raise InputError(f"Cannot write '{path}': {err.strerror or err}.") from err
        return path

    def write_csv(self, path: str | Path) -> Path:
        """Every trial: number, state, scores, held-out scores, parameters, seconds, worker."""
        keys, objectives = self.param_keys(), self.objectives or ["score"]
        path = Path(path)
        try:
            with path.open("w", newline="", encoding="utf-8") as f:
                out = csv.writer(f)
                out.writerow(["trial", "state", *objectives, *(f"{o} (held out)" for o in objectives), *keys,
                              "seconds", "worker"])
                for t in self.ordered():
                    held = list(t.held_out) + [""] * (len(objectives) - len(t.held_out))
                    scores = list(t.scores) + [""] * (len(objectives) - len(t.scores))
                    out.writerow([t.number, t.state, *scores, *held, *(t.params.get(k, "") for k in keys),
                                  "" if t.seconds is None else f"{t.seconds:.3f}", t.worker])
        except OSError as err:
            raise InputError(f"Cannot write '{path}': {err.strerror or err}.") from err
        return path


__all__ = ["SAMPLERS", "SCOPES", "SearchSession", "TrialRow", "default_settings", "objective_of", "param_curves",
           "pareto_front"]
