"""A job's thread, and the threads it starts, run below the GUI thread's priority, so on a busy CPU the
window's timers and repaints come first (Linux: each thread has its own nice value)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

pytest.importorskip("pytestqt")

from fusion_gui.ui.worker import JOB_NICENESS, JobWorker  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_job_and_its_threads_run_below_the_gui(qtbot):
    seen: list[int] = []

    def job(token):
        seen.append(niceness())
        helper = threading.Thread(target=lambda: seen.append(niceness()))  # e.g. the writer, the trainer
        helper.start()
        helper.join()
        yield "one event"
        return "done"

    gui = niceness()
    if gui >= JOB_NICENESS:
        pytest.skip("the tests already run at the jobs' low priority")
    worker = JobWorker(job)
    with qtbot.waitSignal(worker.done, timeout=60_000):
        worker.start()
    assert seen == [JOB_NICENESS, JOB_NICENESS]
    assert niceness() == gui  # the GUI thread keeps its own
