"""Python's cyclic garbage collection, kept on the GUI thread.

A Qt object caught in a reference cycle is destroyed by whichever thread the collector happens to
run in. From a worker thread (an automatic collection, or the gc.collect() accelerate calls as
training starts) ~QObject then runs there and needs the GIL for a Python override, while the GUI
thread holds the GIL and waits on Qt's lock: the app freezes. (Seen: a distillation that never
took its first step.) So automatic collection is switched off and a timer on the GUI thread
collects with Python's own thresholds, and every job collects once on the GUI thread just before
its thread starts, so a worker's own explicit collection finds no Qt garbage.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer

INTERVAL_MS = 250

_installed: "GuiThreadCollector | None" = None


class GuiThreadCollector(QObject):
    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        gc.disable()
        self.timer = QTimer(self, interval=INTERVAL_MS)
        self.timer.timeout.connect(self.collect_due)
        self.timer.start()

    def collect_due(self) -> None:
        """Collect the oldest generation that is past its threshold, as the automatic collector would."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return


def install() -> GuiThreadCollector:
    """Move garbage collection to the GUI thread for the life of the application (idempotent)."""
    global _installed
    if _installed is None:
        _installed = GuiThreadCollector(QCoreApplication.instance())
        _installed.destroyed.connect(gc.enable)  # the application is gone: back to normal
    return _installed


def collect_on_gui_thread() -> None:
    """A full collection now, when called on the GUI thread (before a job's thread starts)."""
    app = QCoreApplication.instance()
    if app is not None and QThread.currentThread() == app.thread():
        gc.collect()


def freeze_startup_objects() -> None:
    """Move everything alive now (the imported libraries, the window) out of the collector's sight.

    They live as long as the process. Left in, the first job's full collection walked them all: 1.5 s
    on the GUI thread at the first click on a busy 2-core machine (engine/imports.py freezes the
    engine's own imports only once a job has run them)."""
    gc.freeze()
