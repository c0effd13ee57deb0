"""The one job runner: a view asks it to run a job factory on a JobWorker, and it does the rest.

JobRunner owns the view's Start/Cancel buttons, progress bar and status line, dispatches events
through a table keyed by event type, and registers with the window's JobList, so closing the window
asks once and cancels every job. LatestJob runs background checks (pre-flight, vocabulary
comparison) where only the newest request counts: a generation counter drops stale results.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from fusion_gui.ui.worker import JobFactory, JobWorker

Handler = Callable[[Any], "str | None"]  # an event handler; a string it returns becomes the status line
_STILL_STOPPING: list[JobWorker] = []  # workers that outlived their window: a QThread must not die running


def ask_to_cancel_jobs(parent: QWidget | None, count: int) -> bool:
    """Ask once whether to cancel `count` running jobs and close (tests replace this)."""
    noun = "job is" if count == 1 else "jobs are"
    answer = QMessageBox.question(
        parent, "Jobs are running", f"{count} {noun} running: cancel {'it' if count == 1 else 'them'} and close?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


class JobList(QObject):
    """The window's jobs. Views find it through their parents (`job_list_for`)."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._jobs: weakref.WeakSet = weakref.WeakSet()  # JobRunner and LatestJob; a view's death ends its entry

    def add(self, job) -> None:
        self._jobs.add(job)

    def running(self, background: bool = True) -> list:
        """Running jobs; background=False leaves out checks the user did not start."""
        return [j for j in list(self._jobs) if j.running and (background or not j.background)]

    def workers(self) -> list[JobWorker]:
        return [w for j in list(self._jobs) for w in j.live_workers()]

    def close_request(self, parent: QWidget | None) -> bool:
        """Before closing: ask once when the user's jobs run; if agreed, cancel and stop them all."""
        asked = self.running(background=False)
        if asked and not ask_to_cancel_jobs(parent, len(asked)):
            return False
        self.stop_all()
        return True

    def stop_all(self, timeout_ms: int = 10_000) -> None:
        """Cancel every job and wait for its thread: nothing half-written is left."""
        for worker in self.workers():
            worker.cancel()
        for worker in self.workers():
            if not worker.wait(timeout_ms):  # still inside one huge tensor: let it end on its own
                worker.setParent(None)
                _STILL_STOPPING.append(worker)


_DEFAULT_LIST = JobList()  # for views shown outside a window that has one (tests, tools)


def job_list_for(widget: QObject | None) -> JobList:
    """The JobList of the nearest parent that has one (the main window), else a default one."""
    while widget is not None:
        found = getattr(widget, "job_list", None)
        if isinstance(found, JobList):
            return found
        widget = widget.parent()
    return _DEFAULT_LIST


def dispatch(handlers: dict[type, Handler], event: Any) -> Handler | None:
    """The handler for an event's type, or for its nearest base class in the table."""
    for kind in type(event).__mro__:
        if kind in handlers:
            return handlers[kind]
    return None


class JobRunner(QObject):
    """Runs one job at a time for a view. Every control is optional; the view passes what it has."""

    started = Signal(object)  # the JobWorker, before it starts: connect extra listeners here
    finished = Signal(object)  # the job's return value, after on_finished

    def __init__(self, view: QWidget, *, start_button=None, cancel_button=None, progress_bar=None,
                 status_label=None, handlers: dict[type, Handler] | None = None,
                 every_event: Callable[[Any], None] | None = None,
                 on_finished: Callable[[Any], "str | None"] | None = None,
                 on_failed: Callable[[str, str], None] | None = None,
                 on_cancelled: Callable[[], "str | None"] | None = None,
                 on_done: Callable[[], None] | None = None,
                 failure_title: str = "The job failed", cancelled_text: str = "Cancelled.",
                 background: bool = False, error_dialog: bool = True):
        super().__init__(view)
        self.view = view
        self.start_button, self.cancel_button = start_button, cancel_button
        self.progress_bar, self.status_label = progress_bar, status_label
        self.handlers = dict(handlers or {})
        self.every_event = every_event
        self.on_finished, self.on_failed, self.on_cancelled, self.on_done = on_finished, on_failed, on_cancelled, on_done
        self.failure_title, self.cancelled_text, self.background = failure_title, cancelled_text, background
        self.error_dialog = error_dialog and not background  # False: the view shows errors itself
        self.worker: JobWorker | None = None
        if cancel_button is not None:
            cancel_button.setEnabled(False)
            cancel_button.clicked.connect(self.cancel)

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.running

    def live_workers(self) -> list[JobWorker]:
        return [self.worker] if self.running else []

    def start(self, factory: JobFactory, status: str = "Starting…") -> JobWorker | None:
        """Run `factory(token)` on a worker; None while a job of this view still runs."""
        if self.running:
            return None
        worker = JobWorker(factory, self.view)
        worker.event.connect(self._on_event)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        worker.done.connect(self._on_done)
        self.worker = worker
        job_list_for(self.view).add(self)
        self._set_controls(running=True)
        if self.progress_bar is not None:
            self.progress_bar.setValue(0)
        self.set_status(status)
        self.started.emit(worker)
        worker.start()
        return worker

    def cancel(self) -> None:
        if self.running:
            self.worker.cancel()
            self.set_status("Cancelling…")
            if self.cancel_button is not None:
                self.cancel_button.setEnabled(False)

    def set_status(self, text: str | None) -> None:
        if isinstance(text, str) and self.status_label is not None:  # a handler may return anything else
            self.status_label.setText(text)

    def set_fraction(self, fraction: float) -> None:
        if self.progress_bar is not None:
            self.progress_bar.setValue(int(max(0.0, min(1.0, fraction)) * 1000))

    def _set_controls(self, running: bool) -> None:
        if self.start_button is not None:
            self.start_button.setEnabled(not running)
        if self.cancel_button is not None:
            self.cancel_button.setEnabled(running)

    def _on_event(self, event: Any) -> None:
        fraction = getattr(event, "fraction", None)
        if isinstance(fraction, float):
            self.set_fraction(fraction)
        handler = dispatch(self.handlers, event)
        if handler is not None:
            self.set_status(handler(event))
        if self.every_event is not None:
            self.every_event(event)

    def _on_finished(self, result: Any) -> None:
        self.set_fraction(1.0)
        if self.on_finished is not None:
            self.set_status(self.on_finished(result))
        self.finished.emit(result)

    def _on_failed(self, summary: str, details: str) -> None:
        self.set_status(f"Failed: {summary}")
        if self.on_failed is not None:
            self.on_failed(summary, details)
        if self.error_dialog:
            from fusion_gui.ui.dialogs.error_dialog import show_error

            show_error(self.view, summary, details, self.failure_title)

    def _on_cancelled(self) -> None:
        self.set_status(self.cancelled_text)
        if self.on_cancelled is not None:
            self.set_status(self.on_cancelled())

    def _on_done(self) -> None:
        self._set_controls(running=False)
        if self.on_done is not None:
            self.on_done()


class LatestJob(QObject):
    """A background check where only the newest request counts (ndv's generation counter).

    `schedule(make_factory)` debounces: after `delay_ms` without a new call, the factory is built and
    run. Each run gets the next generation; an older run is cancelled and whatever it returns is
    dropped, so `result` / `failed` always describe the newest request.
    """

    result = Signal(object)  # the newest run's return value
    failed = Signal(str, str)  # the newest run's error (summary, details)
    stale = Signal(int)  # the generation of a result that was dropped (for tests and logs)

    background = True

    def __init__(self, view: QObject, delay_ms: int = 0):
        super().__init__(view)
        self.view = view
        self.generation = 0
        self.worker: JobWorker | None = None  # the newest run's worker
        self._workers: list[JobWorker] = []
        self._pending: Callable[[], JobFactory | None] | None = None
        self._timer = QTimer(self, singleShot=True, interval=delay_ms)
        self._timer.timeout.connect(self._run_pending)

    @property
    def running(self) -> bool:
        return any(w.running for w in self._workers)

    @property
    def busy(self) -> bool:
        """A run is scheduled or the newest one has not answered yet."""
        return self._timer.isActive() or bool(self._workers and self._workers[-1].running)

    def live_workers(self) -> list[JobWorker]:
        return [w for w in self._workers if w.running]

    def schedule(self, make_factory: Callable[[], JobFactory | None]) -> None:
        self._pending = make_factory
        self._timer.start()

    def cancel_pending(self) -> None:
        """Forget a scheduled run and make any running one stale."""
        self._timer.stop()
        self._pending = None
        self.generation += 1
        for worker in self._workers:
            worker.cancel()

    def request(self, factory: JobFactory) -> JobWorker:
        """Run now; whatever older runs return is dropped."""
        self._timer.stop()
        self._pending = None
        self.generation += 1
        generation = self.generation
        for older in self._workers:
            older.cancel()
        worker = JobWorker(factory, self)
        worker.finished.connect(lambda value: self._answer(generation, self.result, value))
        worker.failed.connect(lambda summary, details: self._answer(generation, self.failed, summary, details))
        worker.done.connect(lambda: self._forget(worker))
        self._workers.append(worker)
        previous, self.worker = self.worker, worker
        if previous is not None and previous not in self._workers:
            previous.deleteLater()  # done, and no longer the newest
        job_list_for(self.view).add(self)
        worker.start()
        return worker

    def _run_pending(self) -> None:
        make_factory, self._pending = self._pending, None
        factory = make_factory() if make_factory is not None else None
        if factory is not None:
            self.request(factory)

    def _answer(self, generation: int, signal, *values) -> None:
        if generation != self.generation:
            self.stale.emit(generation)
            return
        signal.emit(*values)

    def _forget(self, worker: JobWorker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
        if worker is not self.worker:  # the newest stays readable until the next run
            worker.deleteLater()
