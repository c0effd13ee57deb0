"""What a search puts into the history: its settings (as the recipe text), its output folder, the best
trial's scores (held-out ones beside them) and the trial count. Recording never fails a search."""

from __future__ import annotations

import sqlite3

from fusion_gui.session.history import History, Score
from fusion_gui.session.search import SearchSession


def search_scores(session: SearchSession) -> list[Score]:
    best = session.best()
    if best is None:
        return []
    label = f"trial {best.number}"
    scores = [Score(label, objective, "search", float(value))
              for objective, value in zip(session.objectives, best.scores) if value is not None]
    scores += [Score(label, objective, "held_out", float(value))
               for objective, value in zip(session.objectives, best.held_out) if value is not None]
    return scores


def record_search(history: History, session: SearchSession, status: str, seconds: float | None) -> int | None:
    """Call on the GUI thread: it reads the session once, then writes (quickly) to SQLite."""
    best = session.best()
    details = {"trials": len(session.trials), "best_trial": best.number if best else None,
               "front": session.front(), "storage": session.storage_path(), "objectives": session.objectives}
    method = (session.settings.get("recipe") or {}).get("merge_method", "")
    try:
        return history.record(
            "search", title=f"{method} search, {len(session.trials)} trials", recipe=session.dump(),
            output=session.out_dir, scores=search_scores(session), seconds=seconds, status=status,
            details=details, verdict=None) if session.out_dir or session.trials else None
    except (sqlite3.Error, OSError):
        return None


__all__ = ["record_search", "search_scores"]
