"""Where a merge may be written: an existing folder's size, a fresh name beside it, and whether a
folder is (or holds, or lies inside) one of the recipe's inputs. Qt-free; the Run view asks these
before anything is replaced, and the pre-flight shows the same answers before Run is pressed."""

from __future__ import annotations

import os
from pathlib import Path


def folder_bytes(path: str | Path) -> int:
    """What a folder (or file) takes on disk, counting each file once; unreadable parts count 0."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total


def fresh_folder(wanted: str | Path) -> Path:
    """`wanted` when nothing is there yet, else the first free `wanted-2`, `wanted-3`, ..."""
    wanted = Path(wanted).expanduser()
    if not wanted.exists():
        return wanted
    n = 2
    while (candidate := wanted.with_name(f"{wanted.name}-{n}")).exists():
        n += 1
    return candidate


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def input_overlap(out_dir: str | Path, refs: list[str]) -> str | None:
    """A sentence when writing `out_dir` would replace or hold an input (`refs` that are local
    paths); None when it touches none. Hub names that are not local paths are never in the way."""
    out = _resolved(out_dir)
    for ref in refs:
        if not Path(ref).expanduser().exists():
            continue
        model = _resolved(ref)
        if out == model:
            return f"The output folder '{out_dir}' is the input model '{ref}'; choose a new folder."
        if out in model.parents:
            return f"The output folder '{out_dir}' holds the input model '{ref}'; choose a new folder."
        if model in out.parents:
            return f"The output folder '{out_dir}' lies inside the input model '{ref}'; choose a new folder."
    return None

