"""Model paths written relative to a recipe: `model: ./ft_a` beside the recipe file.

mergekit reads such a path against the folder it was started from. The app resolves it against the
recipe's own folder (where the README's examples put the models); the command line keeps mergekit's
reading and falls back to the recipe's folder only when the path does not exist from where it runs.
"""

from __future__ import annotations

import copy
from pathlib import Path

from fusion_gui.engine.merge.recipe import Recipe


def _looks_relative(ref: str) -> bool:
    return ref.startswith(("./", "../", ".\\", "..\\")) or ref in (".", "..")


def _resolve(ref: str, folder: Path, cwd_first: bool) -> str:
    if Path(ref).is_absolute():
        return ref
    beside = folder / ref
    if cwd_first and (Path(ref).exists() or not beside.exists()):
        return ref  # found from here, or nowhere: the error then names the path as written
    # a bare name that is not there is most likely a Hub repo id ("org/name"): leave it
    if beside.exists() or _looks_relative(ref):
        return str(beside.resolve())
    return ref


def resolve_model_paths(recipe: Recipe, folder: str | Path, cwd_first: bool = False) -> tuple[Recipe, dict[str, str]]:
    """A copy of `recipe` with relative model paths read against `folder`, and {as written: resolved}.
    With cwd_first (the command line), a path that exists from the current folder stays as written."""
    folder = Path(folder)
    moved: dict[str, str] = {}

    def fix(ref):
        if not isinstance(ref, str):
            return ref
        new = _resolve(ref, folder, cwd_first)
        if new != ref:
            moved[ref] = new
        return new

    recipe = copy.deepcopy(recipe)
    recipe.base_model = fix(recipe.base_model)
    for entry in recipe.models or []:
        entry.model = fix(entry.model)
    for out_slice in recipe.slices or []:
        out_slice.base_model = fix(out_slice.base_model)
        for source in out_slice.sources:
            source.model = fix(source.model)
    if recipe.tokenizer_source in moved:  # a tokenizer source names one of the models
        recipe.tokenizer_source = moved[recipe.tokenizer_source]
    if recipe.tokenizer and recipe.tokenizer.get("source") in moved:
        recipe.tokenizer["source"] = moved[recipe.tokenizer["source"]]
    return recipe, moved


def describe_moves(moved: dict[str, str], folder: str | Path) -> str:
    """One sentence for the status line: which paths were read against the recipe's folder."""
    if not moved:
        return ""
    pairs = ", ".join(f"{old} → {new}" for old, new in moved.items())
    return f"Model paths relative to the recipe were read against its folder {folder}: {pairs}."
