"""Where a merge may be written: an existing folder's size, a fresh name beside it, and whether a
folder is (or contains, or lies inside) one of the recipe's inputs (the engine's own check). Qt-free;
the Run view asks these before anything is replaced; the pre-flight says the same before Run."""

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



def input_overlap(out_dir: str | Path, refs: list[str]) -> str | None:
    """The engine's sentence when writing `out_dir` would destroy an input (it is, contains or lies
    inside one of `refs` that are local paths); None when it touches none. Hub names never are."""
    from fusion_gui.engine.errors import InputError
    from fusion_gui.engine.merge.output import refuse_input_overlap

    local = {ref: Path(ref).expanduser() for ref in refs if Path(ref).expanduser().exists()}
    try:
        refuse_input_overlap(Path(out_dir), local)
    except InputError as err:
        return str(err)
    return None
