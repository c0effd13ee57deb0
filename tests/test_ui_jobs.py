"""The one job runner: dispatch by event type, controls, cancel, close-asks-once, stale results."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QWidget  # noqa: E402

from fusion_gui.engine.errors import InputError  # noqa: E402
from fusion_gui.events import Log, Progress, StepProgress  # noqa: E402
from fusion_gui.ui.jobs import JobRunner, LatestJob, dispatch  # noqa: E402
from fusion_gui.ui.worker import JobWorker  # noqa: E402
from ui_helpers import close_questions, config_dir, error_dialogs, no_leaked_windows, window  # noqa: E402,F401

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000


def held_job(release: threading.Event, events=(), result="done", obey_cancel=True):
    """A job that yields `events`, then waits for `release` (or its cancel token), then returns."""
    def make(token):
        yield from events
        while not release.is_set():
            if obey_cancel:
                token.raise_if_cancelled()
            release.wait(0.01)
        return result
    return make


@pytest.fixture
def view(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    widget.start, widget.cancel = QPushButton("Start", widget), QPushButton("Cancel", widget)
    widget.bar, widget.status = QProgressBar(widget, minimum=0, maximum=1000), QLabel(widget)
    return widget


def make_runner(view, **kwargs):
    return JobRunner(view, start_button=view.start, cancel_button=view.cancel, progress_bar=view.bar,
                     status_label=view.status, **kwargs)


def test_dispatch_finds_the_handler_by_type_and_base_class():
    class Special(Log):
        pass

    on_log, on_any = object(), object()
    table = {Log: on_log, object: on_any}
    assert dispatch(table, Log("x")) is on_log
    assert dispatch(table, Special("x")) is on_log  # the nearest base class
    assert dispatch(table, 3) is on_any
    assert dispatch({Log: on_log}, Progress(1, 2, 0, 0, 0.0)) is None


def test_the_runner_owns_buttons_progress_and_status(qtbot, view):
    seen: list = []
    runner = make_runner(view, handlers={Progress: lambda e: f"{e.tensors_done} of {e.tensors_total}",
                                         Log: lambda e: seen.append(e.message) or True},  # True: not a status
                         every_event=seen.append, on_finished=lambda result: f"Finished: {result}")
    release = threading.Event()
    events = (Progress(1, 4, 0, 0, 0.0), Log("hello"))
    worker = runner.start(held_job(release, events, result=42))
    assert worker is not None and runner.start(held_job(release)) is None  # one job at a time
    assert not view.start.isEnabled() and view.cancel.isEnabled()
    qtbot.waitUntil(lambda: "hello" in seen, timeout=TIMEOUT_MS)
    assert view.status.text() == "1 of 4"  # the Log handler's True left the status alone
    assert view.bar.value() == 250  # from the event's fraction
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        release.set()
    assert view.status.text() == "Finished: 42" and view.bar.value() == 1000
    assert "hello" in seen and events[0] in seen and events[1] in seen  # handler, then every_event
    assert view.start.isEnabled() and not view.cancel.isEnabled()


def test_cancel_stops_the_job_and_says_so(qtbot, view):
    cancelled: list = []
    runner = make_runner(view, on_cancelled=lambda: cancelled.append(True), cancelled_text="Stopped.")
    worker = runner.start(held_job(threading.Event()))
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        view.cancel.click()
    assert cancelled == [True] and view.status.text() == "Stopped."
    assert view.start.isEnabled() and not view.cancel.isEnabled()


def test_a_failure_is_shown_once_with_the_views_title(qtbot, view, error_dialogs):
    def failing(token):
        yield from ()
        raise InputError("The model 'x' cannot be read.")

    runner = make_runner(view, failure_title="Compare failed")
    with qtbot.waitSignal(runner.start(failing).done, timeout=TIMEOUT_MS):
        pass
    assert error_dialogs == [("The model 'x' cannot be read.", "InputError: The model 'x' cannot be read.")]
    assert view.status.text() == "Failed: The model 'x' cannot be read."


def test_closing_the_window_asks_once_and_cancels_every_job(qtbot, window, close_questions):
    release = threading.Event()
    one = JobRunner(window.compare_panel).start(held_job(release))
    two = JobRunner(window.eval_panel).start(held_job(release))
    window.close()
    assert close_questions == [2]  # one question for both
    assert one.wait(0) and two.wait(0)  # both threads have ended
    assert one.token.cancelled and two.token.cancelled
    assert not window.isVisible()


def test_saying_no_keeps_the_window_and_its_jobs(qtbot, window, monkeypatch):
    from fusion_gui.ui import jobs

    monkeypatch.setattr(jobs, "ask_to_cancel_jobs", lambda parent, count: False)
    release = threading.Event()
    worker = JobRunner(window.distill_panel).start(held_job(release))
    window.close()
    assert window.isVisible() and worker.running and not worker.token.cancelled
    with qtbot.waitSignal(worker.done, timeout=TIMEOUT_MS):
        release.set()


def test_background_checks_are_cancelled_without_a_question(qtbot, window, close_questions):
    background = LatestJob(window.run_panel)
    worker = background.request(held_job(threading.Event()))
    window.close()
    assert close_questions == [] and worker.wait(0) and worker.token.cancelled


def test_a_stale_result_is_dropped(qtbot, view):
    latest = LatestJob(view)
    results, stale = [], []
    latest.result.connect(results.append)
    latest.stale.connect(stale.append)
    slow_release = threading.Event()
    slow = latest.request(held_job(slow_release, result="old", obey_cancel=False))
    with qtbot.waitSignal(latest.result, timeout=TIMEOUT_MS):
        latest.request(quick("new"))
    assert results == ["new"]
    with qtbot.waitSignal(slow.done, timeout=TIMEOUT_MS):
        slow_release.set()  # the older run answers last
    assert results == ["new"] and stale == [1]


def quick(value):
    def make(token):
        yield from ()
        return value
    return make


def test_scheduled_requests_are_debounced_into_one_run(qtbot, view):
    latest = LatestJob(view, delay_ms=50)
    built: list[int] = []

    def factory_for(n):
        def build():
            built.append(n)
            return quick(n)
        return build

    with qtbot.waitSignal(latest.result, timeout=TIMEOUT_MS) as blocker:
        for n in range(3):
            latest.schedule(factory_for(n))
    assert blocker.args == [2] and built == [2]  # only the newest request was built and run


def test_every_job_imports_the_engine_once_before_it_runs(qtbot, monkeypatch):
    """Two jobs starting at once must not both import transformers' lazy modules (issue: "cannot
    import name 'AutoTokenizer'"): one thread imports, the other waits, then both run."""
    from fusion_gui.engine import imports

    calls, job_starts = [], []
    finished_import = threading.Event()

    def slow_import():
        calls.append(threading.get_ident())
        threading.Event().wait(0.3)  # long enough for the second job to arrive meanwhile
        finished_import.set()

    monkeypatch.setattr(imports, "_done", False)
    monkeypatch.setattr(imports, "_import_all", slow_import)

    def job(token):
        job_starts.append(finished_import.is_set())
        yield StepProgress("x", 1, 1, 0.0)
        return None

    workers = [JobWorker(job), JobWorker(job)]
    with qtbot.waitSignals([w.done for w in workers], timeout=TIMEOUT_MS):
        for worker in workers:
            worker.start()
    assert len(calls) == 1  # imported once
    assert job_starts == [True, True]  # no job ran before the import had finished
