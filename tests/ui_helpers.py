"""Fixtures and helpers shared by the tests/test_ui_*.py modules (import them from there)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QCoreApplication, QEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from fusion_gui.events import LayerMetrics, Progress  # noqa: E402
from helpers import screenshots_dir  # noqa: E402

JOB_TIMEOUT_MS = 180_000  # generous: CI runs these on two slow cores
WINDOW_SIZE = (1400, 900)


@pytest.fixture
def no_leaked_windows(qapp):
    """Fail a test that leaves a visible top-level widget behind (the ndv pattern).

    Requests only qapp, so it is set up before qtbot and torn down after qtbot has
    closed the widgets it was given.
    """
    before = {id(w) for w in QApplication.topLevelWidgets()}
    yield
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QApplication.processEvents()
    leaked = [w for w in QApplication.topLevelWidgets()
              if id(w) not in before and w.isVisible()]
    for widget in leaked:
        widget.close()
        widget.deleteLater()
    assert not leaked, f"the test left top-level widgets open: {leaked}"


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    monkeypatch.setenv("FUSION_GUI_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def error_dialogs(monkeypatch):
    """Error dialogs record (summary, details) instead of blocking on exec()."""
    from fusion_gui.ui.dialogs import error_dialog

    shown: list[tuple[str, str]] = []

    def record(self):
        shown.append((self.text(), self.detailedText()))
        return 0

    monkeypatch.setattr(error_dialog.ErrorDialog, "exec", record)
    return shown


@pytest.fixture
def close_questions(monkeypatch):
    """"N jobs are running: cancel them and close?" records N and answers yes, never blocking."""
    from fusion_gui.ui import jobs

    asked: list[int] = []

    def answer(parent, count):
        asked.append(count)
        return True

    monkeypatch.setattr(jobs, "ask_to_cancel_jobs", answer)
    return asked


@pytest.fixture
def window(no_leaked_windows, qtbot, config_dir, error_dialogs, close_questions):
    from fusion_gui.ui.app import create_app
    from fusion_gui.ui.main_window import MainWindow

    create_app([])
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(*WINDOW_SIZE)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.job_list.stop_all()


def preflight(qtbot, window):
    """Run the pre-flight now (on its worker) and wait for its answer: the PlanSummary or None."""
    panel = window.run_panel
    with qtbot.waitSignal(panel.preflight_shown, timeout=JOB_TIMEOUT_MS) as blocker:
        assert panel.preflight() is not None, panel.preflight_label.text()
    return blocker.args[0]


def models_for(method, base: str, ft1: str, ft2: str) -> list[str]:
    """Inputs a method accepts, base first: the planner counts the base among the models."""
    if method.base == "none":
        return [ft1, ft2][: method.max_models or 2]
    refs = [base, ft1, ft2]
    return refs[: method.max_models] if method.max_models else refs


def run_merge(qtbot, window, out_dir: Path):
    """Start a merge from the run panel and wait for its outcome; returns the worker."""
    window.run_panel.set_output_dir(str(out_dir))
    worker = window.run_panel.start_merge()
    assert worker is not None, "the run panel refused to start"
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    return worker


class Gate:
    """Wraps a job factory so the job pauses after a chosen event until the test opens the gate
    (or the job's cancel token fires). Deterministic mid-run screenshots and cancels."""

    def __init__(self, pause_after):
        self.pause_after = pause_after
        self.reached = threading.Event()
        self.opened = threading.Event()

    def open(self) -> None:
        self.opened.set()

    def wrap(self, make_generator):
        def gated(*args):
            token = args[-1]
            job = make_generator(*args)
            try:
                while True:
                    try:
                        event = next(job)
                    except StopIteration as stop:
                        return stop.value
                    yield event
                    if not self.reached.is_set() and self.pause_after(event):
                        self.reached.set()
                        while not (self.opened.is_set() or token.cancelled):
                            self.opened.wait(0.01)
            finally:
                job.close()
        return gated


def after_progress(count: int):
    seen = []

    def check(event) -> bool:
        if isinstance(event, Progress):
            seen.append(event)
        return len(seen) >= count
    return check


def after_layers(count: int):
    seen = []

    def check(event) -> bool:
        if isinstance(event, LayerMetrics) and event.layer is not None:
            seen.append(event)
        return len(seen) >= count
    return check


def save_screenshot(widget, name: str) -> Path:
    folder = screenshots_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert widget.grab().save(str(path)), f"could not write {path}"
    return path
