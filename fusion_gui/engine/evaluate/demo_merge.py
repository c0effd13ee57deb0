"""The recipe the demo merges its two fine-tunes with; `fusion-gui demo` runs it and the app loads it.

Apart from demo.py on purpose: a change to demo.py's code rebuilds the demo models (its stamp hashes it)."""

from __future__ import annotations

from pathlib import Path

# task arithmetic adds both fine-tunes' changes to the base (weights measured best)
DEMO_MERGE = {"merge_method": "task_arithmetic", "weight": 0.8}


def demo_recipe(base: str | Path, fine_tunes: list[str | Path]):
    from fusion_gui.engine.merge.recipe import recipe_from_dict

    return recipe_from_dict({
        "merge_method": DEMO_MERGE["merge_method"], "base_model": str(base), "dtype": "float32",
        "models": [{"model": str(p), "parameters": {"weight": DEMO_MERGE["weight"]}} for p in fine_tunes]})
