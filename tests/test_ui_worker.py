"""The QThread bridge: order of events, outcomes, cancel, and no deadlock on completion."""

from __future__ import annotations

import threading
import weakref

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QThread  # noqa: E402

from fusion_gui.engine.errors import InputError, OutputError  # noqa: E402
from fusion_gui.events import Log, Progress  # noqa: E402
from fusion_gui.ui.worker import JobWorker  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT_MS = 30_000


def counting_job(n: int, result="done"):
    def make(token):
        for i in range(n):
            token.raise_if_cancelled()
            yield Progress(i + 1, n, 0, 0, 0.0, f"t{i}")
        return result
    return make


def test_events_arrive_in_order_then_finished(qtbot):
    worker = JobWorker(counting_job(200, result={"ok": True}))
    seen, results = [], []
    worker.event.connect(lambda ev: seen.append(ev.tensors_done))
    worker.finished.connect(results.append)
    with qtbot.waitSignals([worker.finished, worker.done], order="strict", timeout=TIMEOUT_MS):
        worker.start()
    assert seen == list(range(1, 201))
    assert results == [{"ok": True}]
    assert not worker.running


def test_signals_come_in_strict_order(qtbot):
    worker = JobWorker(counting_job(3))
    with qtbot.waitSignals([worker.event, worker.event, worker.event, worker.finished, worker.done],
                           order="strict", timeout=TIMEOUT_MS):
        worker.start()


def test_events_are_delivered_on_the_gui_thread(qtbot):
    worker = JobWorker(counting_job(5))
    threads = []
    worker.event.connect(lambda ev: threads.append(QThread.currentThread()))
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        worker.start()
    assert threads and all(t is qtbot_thread() for t in threads)


def qtbot_thread():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance().thread()


def test_factory_runs_in_the_worker_thread(qtbot):
    where = []

    def make(token):
        where.append(threading.current_thread())
        yield Log("hi")
        return 1

    worker = JobWorker(make)
    with qtbot.waitSignal(worker.finished, timeout=TIMEOUT_MS):
        worker.start()
    assert where and where[0] is not threading.main_thread()


@pytest.mark.parametrize("error, summary", [
    (InputError("Model 'x' not found."), "Model 'x' not found."),
    (OutputError("Disk full."), "Disk full."),
])
def test_engine_errors_fail_with_their_sentence(qtbot, error, summary):
    def make(token):
        yield Log("start")
        raise error

    worker = JobWorker(make)
    with qtbot.waitSignal(worker.failed, timeout=TIMEOUT_MS) as blocker:
        worker.start()
    assert blocker.args[0] == summary


def test_a_bug_fails_as_unexpected_with_a_traceback(qtbot):
    def make(token):
        yield Log("start")
        return 1 / 0

    worker = JobWorker(make)
    with qtbot.waitSignal(worker.failed, timeout=TIMEOUT_MS) as blocker:
        worker.start()
    summary, details = blocker.args
    assert summary.startswith("Unexpected error: ZeroDivisionError")
    assert "Traceback" in details and "1 / 0" in details


def test_cancel_stops_between_events(qtbot):
    release = threading.Event()

    def make(token):
        for i in range(1000):
            token.raise_if_cancelled()
            yield Progress(i + 1, 1000, 0, 0, 0.0)
            if i == 2:
                release.wait(TIMEOUT_MS / 1000)  # hold here until the test has cancelled
        return "finished anyway"

    worker = JobWorker(make)
    seen = []
    worker.event.connect(lambda ev: seen.append(ev.tensors_done))
    finished = []
    worker.finished.connect(finished.append)
    with qtbot.waitSignal(worker.cancelled, timeout=TIMEOUT_MS):
        worker.start()
        qtbot.waitUntil(lambda: len(seen) >= 3, timeout=TIMEOUT_MS)
        worker.cancel()
        release.set()
    assert not finished and seen == [1, 2, 3]


def test_a_slot_that_waits_on_the_thread_does_not_deadlock(qtbot):
    """The known trap: waiting on the thread from the completion slot."""
    worker = JobWorker(counting_job(3))
    waited = []
    worker.finished.connect(lambda _: waited.append(worker.wait(5000)))
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        worker.start()
    assert waited == [True]


def test_generator_cleanup_runs_on_cancel(qtbot):
    cleaned = []

    def make(token):
        try:
            while True:
                token.raise_if_cancelled()
                yield Log("tick")
        finally:
            cleaned.append(True)

    worker = JobWorker(make)
    with qtbot.waitSignal(worker.cancelled, timeout=TIMEOUT_MS):
        worker.start()
        worker.cancel()
    assert cleaned == [True]


def test_a_worker_runs_once(qtbot):
    worker = JobWorker(counting_job(1))
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        worker.start()
    with pytest.raises(RuntimeError):
        worker.start()


class _Cycle:
    """Garbage only the cyclic collector frees; records which thread freed it."""

    def __init__(self, freed_on: list[str]):
        self.me = self
        weakref.finalize(self, lambda: freed_on.append(threading.current_thread().name))


def test_a_job_starts_with_no_cyclic_garbage_left_for_its_thread_to_collect(qtbot):
    """Cyclic garbage (Qt widgets in signal-lambda cycles, in the app) must be freed on the GUI
    thread: freeing a QObject on a worker thread can deadlock against the GUI thread. The job here
    does what accelerate does as training starts: gc.collect() on its own thread."""
    freed_on: list[str] = []
    _Cycle(freed_on)  # unreachable at once, but only the cyclic collector can free it

    def collecting_job(token):
        import gc

        gc.collect()
        yield Log("collected")
        return None

    worker = JobWorker(collecting_job)
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        worker.start()
    assert freed_on == [threading.main_thread().name]


def test_the_app_collects_garbage_on_the_gui_thread_only(qtbot):
    import gc

    from fusion_gui.ui import gc_guard
    from fusion_gui.ui.app import create_app

    create_app([])
    assert not gc.isenabled()  # no automatic collection, which could run on any thread
    freed_on: list[str] = []
    _Cycle(freed_on)
    for _ in range(gc.get_threshold()[0] + 1):  # past generation 0's threshold
        _Cycle([])
    gc_guard.install().collect_due()  # what the GUI thread's timer runs
    assert freed_on == [threading.main_thread().name]
