"""Small helpers shared by the engine tests."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def screenshots_dir() -> Path:
    """Where UI tests save their pictures: build/screenshots/ (ignored by git), so running the tests changes
    no tracked file; `make screenshots` sets FUSION_GUI_SCREENSHOTS_DIR to docs/screenshots on purpose."""
    return Path(os.environ.get("FUSION_GUI_SCREENSHOTS_DIR") or ROOT / "build" / "screenshots")


def drain(gen):
    """Run an engine job (a generator) to the end: (its return value, the events it yielded)."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events


def run_job(gen):
    """drain's pair the other way round: (the events, the return value), as the distillation and Hub tests
    unpack it."""
    result, events = drain(gen)
    return events, result
