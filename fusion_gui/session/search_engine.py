"""The one place the Search tab meets the search engine (fusion_gui.engine.search): the job it runs,
the trials it lists from a study's storage, and its events turned into TrialRows.

Qt-free. Events are read by their fields (number, params, scores, ...), so the views depend on what
a trial is, not on the event classes' names.
"""

from __future__ import annotations

import math
from typing import Any

from fusion_gui.session.search import TrialRow

_STATES = {"COMPLETE": "complete", "FAIL": "failed", "PRUNED": "pruned", "RUNNING": "running", "WAITING": "running"}


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _scores(value, objectives: list[str]) -> tuple:
    if value is None:
        return ()
    if isinstance(value, dict):  # {objective: score}
        return tuple(_number(value.get(o)) for o in objectives) if objectives else tuple(map(_number, value.values()))
    if isinstance(value, (int, float)):
        return (_number(value),)
    return tuple(_number(v) for v in value)


def row_from(item: Any, objectives: list[str]) -> TrialRow | None:
    """A TrialRow from a trial event or a listed trial (anything with a number and params), else None."""
    number = getattr(item, "number", None)
    params = getattr(item, "params", None)
    if not isinstance(number, int) or not isinstance(params, dict):
        return None
    scores = _scores(getattr(item, "scores", None) if hasattr(item, "scores") else getattr(item, "values", None),
                     objectives)
    state = getattr(item, "state", None)
    state = _STATES.get(getattr(state, "name", str(state)).upper(), str(state).lower()) if state is not None else (
        "complete" if scores else "running")
    seconds = getattr(item, "seconds", None)
    if seconds is None and getattr(item, "duration", None) is not None:
        seconds = item.duration.total_seconds()
    recipe = getattr(item, "recipe", None)
    return TrialRow(number=number, params={k: float(v) for k, v in params.items() if _number(v) is not None},
                    scores=scores, held_out=_scores(getattr(item, "held_out", None), objectives), state=state,
                    seconds=_number(seconds), worker=str(getattr(item, "worker", "") or ""),
                    recipe=recipe if isinstance(recipe, dict) else None)


def search_job(settings: dict, out_dir: str, cancel):
    """The generator the Search tab's worker runs."""
    from fusion_gui.engine.search import run_search, settings_from_dict

    return run_search(settings_from_dict(settings), out_dir, cancel)


def check_settings(settings: dict) -> None:
    """Raise the engine's InputError naming what is wrong, before any model loads."""
    from fusion_gui.engine.search import settings_from_dict

    settings_from_dict(settings)


def list_trials(settings: dict, storage: str, objectives: list[str]) -> list[TrialRow]:
    """Every trial of the study in `storage` (this app's and other workers'); [] when there is none yet."""
    from fusion_gui.engine.search import list_trials as engine_list

    return [row for row in (row_from(t, objectives) for t in engine_list(storage, settings.get("study_name")))
            if row is not None]


def recipe_for_params(settings: dict, params: dict):
    """The Recipe a trial's parameters stand for."""
    from fusion_gui.engine.search import recipe_for

    return recipe_for(settings_from(settings), params)


def settings_from(settings: dict):
    from fusion_gui.engine.search import settings_from_dict

    return settings_from_dict(settings)
