"""Errors an engine job raises. Their message is the one sentence a user sees."""

import re


class FusionError(Exception):
    """Base class of the engine's own errors."""


class InputError(FusionError):
    """Bad input: a path, a recipe key, a tensor name or shape. The CLI exits 2."""


class Cancelled(FusionError):
    """The user cancelled the job. The CLI exits 130."""


class OutputError(FusionError):
    """Writing the output failed (disk full, permission). The CLI exits 1."""


_NO_MEMORY = ("not enough memory", "can't allocate memory", "out of memory")  # torch's CPU and CUDA allocators


def out_of_memory_sentence(err: BaseException) -> str | None:
    """The one sentence for an error that means memory ran out (MemoryError, torch's OutOfMemoryError
    or the RuntimeError its CPU allocator raises), else None: a job that fails this way is not a bug."""
    text = str(err)
    if not (isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError"
            or (isinstance(err, RuntimeError) and any(s in text.lower() for s in _NO_MEMORY))):
        return None
    where = " on the GPU" if "cuda" in text.lower() else ""
    size = re.search(r"allocate (\d+) bytes", text)
    amount = f"{int(size.group(1)) / 1e9:.1f} GB" if size else None
    if amount is None and (size := re.search(r"allocate ([\d.]+ [KMGT]iB)", text)):
        amount = size.group(1)
    what = f"allocating {amount} more failed" if amount else "the job needs more than is free"
    return f"Out of memory{where}: {what}; close other programs or try a smaller model or batch."
