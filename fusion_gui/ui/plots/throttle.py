"""Coalesce many "data changed" calls into at most one redraw per interval."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer

REDRAW_INTERVAL_MS = 50  # at most ~20 redraws per second


class RedrawThrottle(QObject):
    """`schedule()` asks for a redraw; the callback runs once when the interval has passed.

    Events arrive far faster than a screen needs repainting (one per tensor), so the data is
    stored on every event and drawn on a single-shot timer. `flush()` draws now (tests, export).
    """

    def __init__(self, redraw: Callable[[], None], interval_ms: int = REDRAW_INTERVAL_MS,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._redraw = redraw
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._redraw)

    @property
    def pending(self) -> bool:
        return self._timer.isActive()

    def schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        self._timer.stop()
        self._redraw()
