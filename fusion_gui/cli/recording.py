"""Every merge, distillation and evaluation the command line runs goes into the history, whatever its
outcome (done, failed, cancelled). FUSION_GUI_HISTORY=0 turns this off; FUSION_GUI_DATA_DIR moves it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from fusion_gui.cli.drive import drive
from fusion_gui.engine.errors import Cancelled


def open_history():
    """The history, or None when recording is off; a damaged file's message goes to stderr."""
    from fusion_gui.session.run_records import open_history as open_

    history = open_()
    if history is not None and history.notice:
        print(f"warning: {history.notice}", file=sys.stderr)
    return history


def drive_recorded(start, record: Callable[..., object] | None, progress: bool = True):
    """drive(start), then record(result or None, status, seconds) when recording is on."""
    began = time.perf_counter()
    status, result = "failed", None
    try:
        result = drive(start, progress)
        status = "done"
        return result
    except (Cancelled, KeyboardInterrupt):
        status = "cancelled"
        raise
    finally:
        if record is not None:
            record(result, status, time.perf_counter() - began)
