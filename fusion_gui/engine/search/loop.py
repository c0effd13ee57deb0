"""The search loop: ask the study for a point, merge it in memory, score it, tell the study; repeat until
the budget, the grid, the cancel token, the pause token or three failures in a row stop it. Then (unless
cancelled, paused or failing) re-score the best candidates on the held-out examples and export.

`run_search` is a generator of events (search/events.py) returning a SearchResult. Modes: "new" (a fresh
study), "resume" (continue a stored one, e.g. after a pause or a kill), "worker" (join a study another
process started: run trials only; the process that started it re-scores and exports).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Generator
from pathlib import Path

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import Cancelled, InputError, out_of_memory_sentence
import fusion_gui.engine.search.export as export
from fusion_gui.engine.search.events import (BestSoFar, HeldOutScore, ParetoFront, SearchResult, SearchStarted,
                                             SearchStopped, TrialFinished, TrialStarted)
from fusion_gui.engine.search.genome import dimensions, recipe_dict
from fusion_gui.engine.search.settings import SearchSettings, check_settings
from fusion_gui.engine.search.study import (complete_trials, fail_orphans, list_trials, open_study, storage_url,
                                            worker_id)
from fusion_gui.events import Event, Log

MODES = ("new", "resume", "worker")
_FRONT_MAX = 10  # Pareto-front members re-scored on the held-out examples at most


def run_search(settings: SearchSettings, out_dir: str | Path | None, cancel: CancelToken | None = None, *,
               mode: str = "new", pause: CancelToken | None = None) -> Generator[Event, None, SearchResult]:
    """Generator: run (or resume, or join) a search; yields events, returns a SearchResult.
    `cancel` stops at once (the running trial is marked failed); `pause` stops after the running trial
    (resume later with mode="resume"). The caller records the result in the history (session/search_record.py)."""
    from fusion_gui.engine.merge.memory import JobMemory

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    check_settings(settings)
    cancel, pause = cancel or CancelToken(), pause or CancelToken()
    out = Path(out_dir).expanduser().absolute() if out_dir is not None else None
    if out is not None:
        if mode == "new" and out.exists() and any(p.name != ".gitkeep" for p in out.iterdir()) \
                and not (out / "search.sqlite").exists():
            raise InputError(f"Output folder {out} already holds other files; choose an empty or new folder.")
        if mode != "new" and not out.is_dir() and not settings.storage:
            raise InputError(f"There is no search in {out} to {'join' if mode == 'worker' else 'resume'}.")
        out.mkdir(parents=True, exist_ok=True)
    url = storage_url(settings, out)
    memory = JobMemory().start()
    start = time.perf_counter()
    try:
        return (yield from _search(settings, out, url, cancel, pause, mode, start, memory))
    finally:
        memory.stop()


def _search(settings, out, url, cancel, pause, mode, start, memory):
    from fusion_gui.engine.search.candidates import CandidateMerger
    from fusion_gui.engine.search.objectives import Objectives

    # the objectives' split data: in the output folder, or (a worker with only a storage URL) a temporary one
    data_dir = out / "data" if out else Path(tempfile.mkdtemp(prefix="fusion-search-"))
    objectives = Objectives(settings, data_dir)  # reads and splits the data: a missing file fails before any model
    yield Log(f"Loading {len(settings.models) + bool(settings.base)} models once for the whole search ...")
    merger = CandidateMerger(list(settings.models), settings.base, settings.device)
    try:
        dims = dimensions(settings, merger.n_layers)
        if settings.chosen_sampler == "grid" and len(dims) > 2:
            raise InputError(f"A grid covers one or two dimensions; these settings tune {len(dims)} "
                             f"({', '.join(d.name for d in dims)}): use cmaes, or tune fewer.")
        directions = objectives.directions if settings.pareto else [objectives.directions[0]]
        study = open_study(settings, url, directions, dims, mode)
        for number in fail_orphans(study):
            yield Log(f"Trial {number} was left unfinished by a process that ended; it is marked failed.", "warning")
        yield Log(f"Search {settings.study_name!r} in {url}: {len(dims)} parameters "
                  f"({', '.join(d.name for d in dims)}), sampler {settings.chosen_sampler}, on {merger.device}.")
        yield SearchStarted(url, settings.study_name, tuple(d.name for d in dims), tuple(objectives.names),
                            tuple(o.maximize for o in settings.objectives), settings.pareto, len(study.trials))
        stopped = yield from _trials(settings, study, merger, objectives, dims, cancel, pause, start)
        yield stopped
        result = SearchResult(str(out) if out else "", url, settings.study_name, stopped,
                              len(complete_trials(study)), seconds=time.perf_counter() - start)
        if mode == "worker" or stopped.reason in ("cancelled", "paused", "failures") or not result.trials:
            return _finish(result, memory)  # nothing partial is presented as a result
        best = yield from _held_out(settings, study, merger, objectives, dims, cancel)
        return (yield from _export(settings, out, url, study, merger, objectives, dims, best, result, memory))
    finally:
        merger.close()


def _finish(result: SearchResult, memory) -> SearchResult:
    from dataclasses import replace

    return replace(result, peak_bytes=memory.stop())


def _budget_left(settings: SearchSettings, study, start: float) -> SearchStopped | None:
    from optuna.trial import TrialState

    if settings.seconds is not None and time.perf_counter() - start >= settings.seconds:
        return SearchStopped("time", f"The time budget of {settings.seconds:g} s is spent.")
    if settings.trials is not None:
        used = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                            TrialState.RUNNING, TrialState.PRUNED)))
        if used >= settings.trials:
            return SearchStopped("budget", f"The budget of {settings.trials} trials is spent.")
    if settings.chosen_sampler == "grid" and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return SearchStopped("grid done", "Every grid point has been tried.")
    return None


def _trials(settings, study, merger, objectives, dims, cancel, pause, start):
    """Run trials until something stops the search; returns the SearchStopped."""
    failures, last_error, best_number = 0, "", None
    while True:
        if cancel.cancelled:
            return SearchStopped("cancelled", "The search was cancelled; resume it with --resume.")
        if pause.cancelled:
            return SearchStopped("paused", "The search is paused; resume it with --resume.")
        done = _budget_left(settings, study, start)
        if done is not None:
            return done
        trial = study.ask()
        if settings.chosen_sampler == "grid" and not trial.user_attrs.get("grid"):
            study.tell(trial, state=_pruned())  # another worker took the last grid point
            continue
        trial.set_user_attr("worker", worker_id())
        point = {d.name: _suggest(trial, d) for d in dims}
        began, finished = time.perf_counter(), None
        try:
            yield TrialStarted(trial.number, point)
            model, tokenizer = merger.load(recipe_dict(settings, dims, point, merger.n_layers), cancel)
            scores = objectives.score(model, tokenizer, "search", cancel)
            values = _values(settings, objectives.names, scores)
            trial.set_user_attr("scores", scores)
            study.tell(trial, values)
            finished = TrialFinished(trial.number, point, scores, values, time.perf_counter() - began)
            failures = 0
        except Exception as err:  # noqa: BLE001 - a failed trial is recorded and counted, the search goes on
            cancelled = isinstance(err, Cancelled)
            last_error = "cancelled" if cancelled else (out_of_memory_sentence(err) or str(err) or type(err).__name__)
            trial.set_user_attr("error", last_error)
            study.tell(trial, state=_failed())
            finished = TrialFinished(trial.number, point, {}, (), time.perf_counter() - began, "failed", last_error)
            if cancelled:
                yield finished
                return SearchStopped("cancelled", "The search was cancelled; resume it with --resume.")
            failures += 1
        finally:
            if finished is None:  # the generator was closed mid-trial (Ctrl-C): the trial must not stay RUNNING
                trial.set_user_attr("error", "cancelled")
                study.tell(trial, state=_failed())
        yield finished
        if failures >= settings.max_failures:
            return SearchStopped("failures", f"{failures} trials in a row failed, so the search stopped; the last "
                                             f"said: {last_error}")
        best_number = yield from _progress(settings, study, best_number)


def _progress(settings, study, best_number):
    """BestSoFar when the best changed (any worker's trial), the Pareto front for two objectives."""
    trials = complete_trials(study)
    if not trials:
        return best_number
    if settings.pareto:
        front = study.best_trials
        yield ParetoFront(tuple(t.number for t in front), tuple(dict(t.user_attrs.get("scores", {})) for t in front))
        return best_number
    best = study.best_trial
    if best.number != best_number:
        yield BestSoFar(best.number, dict(best.params), dict(best.user_attrs.get("scores", {})), best.value)
    return best.number


def _suggest(trial, d):
    if d.integer:
        return trial.suggest_int(d.name, int(d.low), int(d.high))
    return trial.suggest_float(d.name, d.low, d.high)


def _values(settings: SearchSettings, names: list[str], scores: dict) -> tuple[float, ...]:
    if settings.pareto:
        return tuple(scores[n] for n in names)
    if len(names) == 2:  # combine: mean
        return ((scores[names[0]] + scores[names[1]]) / 2,)
    return (scores[names[0]],)


def _failed():
    from optuna.trial import TrialState

    return TrialState.FAIL


def _pruned():
    from optuna.trial import TrialState

    return TrialState.PRUNED


def best_candidates(settings: SearchSettings, study) -> list:
    """The trials worth re-scoring, best first: the top `rescore` by value, or the Pareto front."""
    trials = complete_trials(study)
    if settings.pareto:
        front = study.best_trials[:_FRONT_MAX]
        if all(o.maximize for o in settings.objectives):  # best first: the highest mean of the two scores
            front.sort(key=lambda t: -sum(t.values) / len(t.values))
        return front
    sign = -1 if settings.objectives[0].maximize or len(settings.objectives) == 2 else 1
    return sorted(trials, key=lambda t: (sign * t.value, t.number))[:settings.rescore]


def _held_out(settings, study, merger, objectives, dims, cancel):
    best = []
    candidates = best_candidates(settings, study)
    yield Log(f"Re-scoring {len(candidates)} best candidate{'s' * (len(candidates) > 1)} on held-out examples ...")
    for trial in candidates:
        cancel.raise_if_cancelled()
        point = {d.name: trial.params[d.name] for d in dims}
        model, tokenizer = merger.load(recipe_dict(settings, dims, point, merger.n_layers), cancel)
        held = objectives.score(model, tokenizer, "held_out", cancel)
        best.append(HeldOutScore(trial.number, point, dict(trial.user_attrs.get("scores", {})), held))
        yield best[-1]
    return tuple(best)


def _export(settings, out, url, study, merger, objectives, dims, best, result, memory):
    from dataclasses import replace

    top = best[0]
    recipe = recipe_dict(settings, dims, top.params, merger.n_layers)
    scores = ", ".join(f"{k} {v:.3f} (held out {top.held_out[k]:.3f})" for k, v in top.search.items())
    note = f"Best of {result.trials} search trials: trial {top.number}; {scores}."
    text = export.recipe_text(recipe, note)
    recipe_file = str(export.write_whole(out / export.BEST_RECIPE, text)) if out else None
    csv_file = None
    if out:
        csv_file = str(export.write_whole(out / export.TRIALS_CSV,
                                          export.trials_csv_text(list_trials(url, settings.study_name),
                                                                 objectives.names)))
        export.write_whole(out / export.HELD_OUT_JSON, export.held_out_text(best))
    yield Log(f"Best recipe: {recipe_file or '(no output folder)'}; {scores}.")
    return replace(result, best=best, recipe_file=recipe_file, trials_csv=csv_file, peak_bytes=memory.stop(),
                   recipe_text=text, extra={"recipe": recipe, "input_bytes": merger.input_bytes})
