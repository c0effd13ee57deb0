"""Helpers of tests/test_ui_failures.py and tests/test_ui_cancels.py: fail a call in the middle of a job,
and look at what a job left on disk."""

from __future__ import annotations

import errno
import functools
import re
import threading
from pathlib import Path

DISK_FULL = OSError(errno.ENOSPC, "No space left on device")
CANNOT_READ = OSError(errno.EIO, "Input/output error")
# what torch's CPU allocator raises when a tensor does not fit (its message, shortened)
NO_MEMORY = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                         "you tried to allocate 4294967296 bytes.")


def fail_once(fn, call: int, error: BaseException):
    """`fn`, except that its `call`-th call (counted over all threads) raises `error`; the ones after
    it run normally, so the next job of the same kind succeeds. `.failed` says whether it fired."""
    lock, calls = threading.Lock(), [0]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with lock:
            calls[0] += 1
            now = calls[0]
        if now == call:
            wrapper.failed = True
            raise error
        return fn(*args, **kwargs)

    wrapper.failed = False
    return wrapper


def tree(folder: Path) -> list[str]:
    """Everything under a folder (hidden files too), as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def assert_one_sentence(text: str, *names: str, bug: bool = False) -> None:
    """The message a user sees: one line, one sentence, naming what is wrong. A bug says so
    ("Unexpected error: ...") instead of passing for bad input."""
    assert text and "\n" not in text.strip(), text
    assert text.startswith("Unexpected error") == bug, text
    assert not re.search(r"[.!?]\s+[A-Z][a-z]", text), f"more than one sentence: {text}"
    for name in names:
        assert name in text, f"{name!r} is not in: {text}"


def watch_events(runner) -> list:
    """The events each job of a JobRunner yields, in order, from its next start on."""
    events: list = []
    runner.started.connect(lambda worker: worker.event.connect(events.append))
    return events


def perplexity_only(panel, folder: Path) -> Path:
    """Set the Evaluate tab to perplexity on a small text file alone (no demo skills); the file's path."""
    text = folder / "text.txt"
    text.write_text("the cat sat on the mat\n" * 40)
    for box in panel.task_boxes.values():
        box.setChecked(False)
    panel.text_edit.setText(str(text))
    return text
