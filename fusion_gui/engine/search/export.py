"""What a finished search leaves behind: the best recipe (a normal merge recipe YAML), every trial as CSV,
the held-out scores as JSON, and one record in the history. Files appear whole (written aside, then renamed).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from fusion_gui.engine.search.events import HeldOutScore
from fusion_gui.engine.search.study import TrialRow

BEST_RECIPE = "best-recipe.yml"
TRIALS_CSV = "trials.csv"
HELD_OUT_JSON = "held-out.json"


def write_whole(path: Path, text: str) -> Path:
    aside = path.with_name(f".{path.name}.partial")
    aside.write_text(text, encoding="utf-8")
    os.replace(aside, path)
    return path


def recipe_text(recipe_data: dict, note: str = "") -> str:
    from fusion_gui.engine.merge.recipe import dump_recipe, recipe_from_dict

    header = "".join(f"# {line}\n" for line in note.splitlines())
    return header + dump_recipe(recipe_from_dict(recipe_data))


def trials_csv_text(rows: list[TrialRow], objectives: list[str]) -> str:
    params = list(dict.fromkeys(name for r in rows for name in r.params))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "state", *params, *objectives, "seconds", "worker", "error"])
    for r in rows:
        writer.writerow([r.number, r.state, *(r.params.get(p, "") for p in params),
                         *(r.scores.get(o, "") for o in objectives),
                         "" if r.seconds is None else f"{r.seconds:.3f}", r.worker, r.error])
    return out.getvalue()


def held_out_text(best: tuple[HeldOutScore, ...]) -> str:
    return json.dumps([{"trial": b.number, "params": b.params, "search": b.search, "held_out": b.held_out}
                       for b in best], indent=1) + "\n"


def record_search(settings, out_dir: Path, best: tuple[HeldOutScore, ...], trials: int, seconds: float,
                  peak_bytes: int | None, status: str, recipe: str, history=None) -> int | None:
    """One history run of kind "search": the settings, the best recipe, search and held-out scores."""
    from fusion_gui.session.history import History, InputFile, Score

    history = history if history is not None else History()
    inputs = [InputFile(m, "model") for m in settings.models]
    if settings.base:
        inputs.insert(0, InputFile(settings.base, "base"))
    scores = [Score(f"trial {b.number}", name, split, value)
              for b in best[:1] for split, part in (("search", b.search), ("held_out", b.held_out))
              for name, value in part.items()]
    return history.record("search", title=f"{settings.method} search: {trials} trials", recipe=recipe,
                          inputs=inputs, output=str(out_dir), scores=scores, seconds=seconds, peak_bytes=peak_bytes,
                          status=status, details={"settings": settings.to_dict(),
                                                  "held_out": json.loads(held_out_text(best))})
