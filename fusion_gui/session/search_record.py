"""What a merge search puts into the history: one run of kind "search" with its settings, the best recipe,
and the best candidate's scores on the search and on the held-out examples (metrics "search", "held_out")."""

from __future__ import annotations

import json
from dataclasses import asdict

from fusion_gui.session.history import History, InputFile, Score


def record_search(history: History, settings, result, status: str = "done", seconds: float | None = None) -> int:
    """Store a search (`result` None when it failed before returning one); returns the run id."""
    inputs = [InputFile(m, "model") for m in settings.models]
    if settings.base:
        inputs.insert(0, InputFile(settings.base, "base"))
    best = result.best if result is not None else ()
    scores = [Score(f"trial {b.number}", name, split, value)
              for b in best[:1] for split, part in (("search", b.search), ("held_out", b.held_out))
              for name, value in part.items()]
    trials = result.trials if result is not None else 0
    details = {"settings": settings.to_dict(), "held_out": [asdict(b) for b in best]}
    if result is not None:
        details.update(storage=result.storage, study_name=result.study_name, stopped=result.stopped.reason,
                       trials_csv=result.trials_csv)
    return history.record("search", title=f"{settings.method} search: {trials} trials",
                          recipe=result.recipe_text if result is not None else "", inputs=inputs,
                          output=result.out_dir if result is not None else "", scores=scores,
                          seconds=seconds if seconds is not None else (result.seconds if result else None),
                          peak_bytes=result.peak_bytes if result is not None else None, status=status,
                          details=json.loads(json.dumps(details, default=str)))
