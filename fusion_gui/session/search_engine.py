"""The one place the Search tab meets the search engine (fusion_gui.engine.search): the job it runs,
the trials it lists from a study's storage, a trial's recipe, and trials turned into TrialRows.

Qt-free. The app keeps the settings as the YAML mapping the command line reads; the engine parses it
here (`settings_from_dict`), so the form and `fusion-gui search` can never disagree.
"""

from __future__ import annotations

import math
from pathlib import Path

from fusion_gui.session.search_trials import TrialRow


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def row_from(item, objectives: list[str]) -> TrialRow | None:
    """A TrialRow from the engine's TrialStarted / TrialFinished events or a listed trial (study.TrialRow);
    None for a grid point still waiting its turn."""
    state = getattr(item, "state", "running")  # TrialStarted has none: it runs
    if state == "waiting" or not item.params:
        return None
    scores = getattr(item, "scores", None) or {}
    return TrialRow(number=item.number, params={k: float(v) for k, v in item.params.items()},
                    scores=tuple(_number(scores.get(o)) for o in objectives) if scores else (),
                    state=state, seconds=_number(getattr(item, "seconds", None)),
                    worker=str(getattr(item, "worker", "") or ""), error=str(getattr(item, "error", "") or ""))


def settings_from(settings: dict):
    from fusion_gui.engine.search.settings import settings_from_dict

    return settings_from_dict(settings)


def check_settings(settings: dict) -> None:
    """The engine's checks that need no model: InputError names the first problem in one sentence."""
    from fusion_gui.engine.search.settings import check_settings as engine_check

    engine_check(settings_from(settings))


def search_job(settings: dict, out_dir: str, token, *, pause=None, resume: bool = False):
    """The generator the Search tab's worker runs (a module function so tests can wrap it)."""
    from fusion_gui.engine.search.loop import run_search

    return run_search(settings_from(settings), out_dir, token, mode="resume" if resume else "new", pause=pause)


def record(history, settings: dict, result, status: str, seconds: float | None) -> int | None:
    """The search in the history (the engine leaves that to its caller); a history problem never fails it."""
    import sqlite3

    from fusion_gui.session.search_record import record_search

    try:
        return record_search(history, settings_from(settings), result, status, seconds)
    except (sqlite3.Error, OSError):
        return None


def list_trials(settings: dict, storage: str, objectives: list[str]) -> list[TrialRow]:
    """Every trial of the study in `storage` (this app's and other workers'), by number."""
    from fusion_gui.engine.search.study import list_trials as engine_list

    rows = (row_from(t, objectives) for t in engine_list(storage, settings.get("study_name") or "search"))
    return [row for row in rows if row is not None]


def stored_settings(out_dir: str, study_name: str = "search") -> dict:
    """The settings a search in `out_dir` (its default SQLite storage) ran with, as its study keeps them."""
    import optuna

    from fusion_gui.engine.errors import InputError
    from fusion_gui.engine.search.study import STORAGE_FILE, storage

    file = Path(out_dir).expanduser().absolute() / STORAGE_FILE
    if not file.is_file():
        raise InputError(f"There is no search in {out_dir}: it holds no {STORAGE_FILE}.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage(f"sqlite:///{file}"))
    except KeyError:
        raise InputError(f"{file} holds no search named {study_name!r}.") from None
    settings = study.user_attrs.get("settings")
    if not isinstance(settings, dict):
        raise InputError(f"The search in {out_dir} did not keep its settings; load its settings file instead.")
    return settings


def recipe_for_params(settings: dict, params: dict):
    """The Recipe of a trial's parameters: the engine's genome, as the search merged it in memory."""
    from fusion_gui.engine.errors import InputError
    from fusion_gui.engine.merge.recipe import recipe_from_dict
    from fusion_gui.engine.search.genome import recipe_for

    try:
        return recipe_from_dict(recipe_for(settings_from(settings), params))
    except KeyError as err:
        raise InputError(f"The trial has no value for {err.args[0]}: it belongs to other search settings.") from None
