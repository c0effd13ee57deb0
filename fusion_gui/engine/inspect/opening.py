"""Opening the models an inspection compares: readers for a base and N models, the files' identity
(for caches), and one-sentence errors for a tensor name that is not there."""

from __future__ import annotations

import difflib
from contextlib import contextmanager

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.opener import open_model


@contextmanager
def opened(refs: list[str]):
    """Readers for `refs`, in order, closed on exit (also when opening a later one fails)."""
    readers = []
    try:
        for ref in refs:
            readers.append(open_model(ref))
        yield readers
    finally:
        for r in readers:
            r.close()


def files_identity(reader) -> tuple:
    """What the reader's data is: each file's path, size and modification time. A rewritten file
    gets another identity, so cached numbers of the old one are not shown for it. (A LoRA adapter's
    files include its base's.)"""
    parts = []
    for path in reader.files:
        stat = path.stat()
        parts.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return tuple(parts)


def check_tensor(name: str, readers) -> tuple[int, ...]:
    """The tensor's shape, the same in every model; InputError naming close matches otherwise."""
    for r in readers:
        if name not in r.tensors:
            close = difflib.get_close_matches(name, list(r.tensors), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise InputError(f"Model '{r.label}' has no tensor '{name}'.{hint}")
    shapes = {r.label: tuple(r.tensors[name].shape) for r in readers}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"'{label}' has {list(s)}" for label, s in shapes.items())
        raise InputError(f"Shape mismatch for tensor '{name}': {listed}.")
    if not readers[0].tensors[name].dtype.is_floating_point:
        raise InputError(f"Tensor '{name}' holds integers ({readers[0].tensors[name].dtype}), not weights.")
    return next(iter(shapes.values()))
