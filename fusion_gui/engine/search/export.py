"""What a finished search leaves behind: the best recipe (a normal merge recipe YAML), every trial as CSV,
the held-out scores as JSON (the history record is session/search_record.py). Files appear whole (written
aside, then renamed).
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
