"""The one bridge between the engine and Qt: run an engine generator on a dedicated QThread.

Every value the generator yields is re-emitted, in order, as `event` on the GUI thread; its
return value becomes `finished`, an engine error `failed(summary, details)`, a fired cancel token
`cancelled`. The outcome is announced from QThread.finished, so the thread has stopped running
Python code by then and a slot that calls `wait()` cannot deadlock on a queued `quit`.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from typing import Any, Callable, Generator

from PySide6.QtCore import QObject, QThread, Qt, Signal, Slot

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import Cancelled, InputError, OutputError, out_of_memory_sentence
from fusion_gui.engine.imports import import_engine_dependencies
from fusion_gui.ui.gc_guard import collect_on_gui_thread

JobFactory = Callable[[CancelToken], Generator[Any, None, Any]]
JOB_NICENESS = 10  # below the GUI thread: on a busy CPU its 5 ms timers otherwise waited 100s of ms


def _yield_cpu_to_the_gui() -> None:
    """Lower this job thread's priority. On Linux a thread has its own nice value, and the threads a job
    starts (readers, the writer, training) inherit it; elsewhere this does nothing."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)
        except OSError:  # a sandbox may refuse: the job runs at normal priority
            pass


class _JobThread(QThread):
    """Runs the generator in run(); no event loop is needed, so quitting is never queued."""

    yielded = Signal(object)

    def __init__(self, make_job: JobFactory, token: CancelToken):
        super().__init__()
        self._make_job = make_job
        self._token = token
        self.outcome: tuple[str, Any] = ("failed", ("The job did not run.", ""))

    def run(self) -> None:  # runs on the worker thread
        try:
            _yield_cpu_to_the_gui()
            import_engine_dependencies()  # once, one thread at a time: lazy imports must not race
            job = self._make_job(self._token)  # built here: even setup work stays off the GUI
            try:
                while True:
                    try:
                        item = next(job)
                    except StopIteration as stop:
                        self.outcome = ("finished", stop.value)
                        return
                    self.yielded.emit(item)
            finally:
                job.close()
        except Cancelled:
            self.outcome = ("cancelled", None)
        except (InputError, OutputError) as err:
            self.outcome = ("failed", (str(err), f"{type(err).__name__}: {err}"))
        except BaseException as err:  # a bug (say so, keep the traceback for the report), or no memory left
            summary = out_of_memory_sentence(err) or f"Unexpected error: {type(err).__name__}: {err}"
            self.outcome = ("failed", (summary, traceback.format_exc()))


class JobWorker(QObject):
    """One engine job on its own thread. Create, connect, `start()`; `cancel()` asks it to stop.

    Signals arrive on the thread that owns the worker (the GUI thread):
    event(obj) for each yielded item, then exactly one of finished(result),
    failed(summary, details) or cancelled(), then done().
    """

    event = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    done = Signal()

    def __init__(self, make_job: JobFactory, parent: QObject | None = None):
        super().__init__(parent)
        self.token = CancelToken()
        self._thread = _JobThread(make_job, self.token)
        self._thread.yielded.connect(self._forward, Qt.ConnectionType.QueuedConnection)
        self._thread.finished.connect(self._announce, Qt.ConnectionType.QueuedConnection)
        self._started = False
        self._announced = False

    def start(self) -> "JobWorker":
        if self._started:
            raise RuntimeError("a JobWorker runs once; create a new one for the next job")
        self._started = True
        collect_on_gui_thread()  # so the job's own gc.collect() (accelerate calls one) finds no Qt garbage
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next check (between tensors or steps)."""
        self.token.cancel()

    @property
    def running(self) -> bool:
        return self._started and not self._announced

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the thread has stopped (not for the GUI thread during normal use)."""
        if not self._started:
            return True
        return self._thread.wait() if timeout_ms < 0 else self._thread.wait(timeout_ms)

    def stop(self, timeout_ms: int = 10_000) -> bool:
        """Cancel and wait for the thread to end: for closing the window mid-job."""
        self.cancel()
        return self.wait(timeout_ms)

    @Slot(object)
    def _forward(self, item: Any) -> None:
        self.event.emit(item)

    @Slot()
    def _announce(self) -> None:
        if self._announced:
            return
        self._announced = True
        self._thread.wait(5000)  # at once in practice: the thread has left run()
        kind, value = self._thread.outcome
        if kind == "finished":
            self.finished.emit(value)
        elif kind == "cancelled":
            self.cancelled.emit()
        else:
            self.failed.emit(*value)
        self.done.emit()
