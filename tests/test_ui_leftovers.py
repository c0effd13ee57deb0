"""The pre-flight shows the unfinished folders a killed job left beside the output, and offers to delete them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from fusion_gui.engine.io.partial import OWNER_FILE, claim, owner_record  # noqa: E402
from fusion_gui.ui.dialogs import leftovers  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    close_questions, config_dir, error_dialogs, no_leaked_windows, preflight, window,
)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_preflight_lists_leftovers_and_deletes_only_those_whose_job_is_gone(window, qtbot, llama_family, tmp_path,
                                                                             monkeypatch):
    dead = tmp_path / ".killed.partial-0123abcd"
    dead.mkdir()
    (dead / "model-00001-of-00002.safetensors").write_bytes(b"x" * 4096)
    (dead / OWNER_FILE).write_text(json.dumps(owner_record("merge") | {"pid": _dead_pid()}))
    live = claim(tmp_path / ".running.partial-89abcdef", "merge")  # this process: still running
    window.models_panel.add_models([str(p) for p in llama_family])
    window.run_panel.set_output_dir(str(tmp_path / "out"))
    assert preflight(qtbot, window) is not None
    text = window.run_panel.preflight_label.text()
    assert str(dead) in text and "no longer runs" in text and str(live) in text and "still running" in text
    assert leftovers.DELETE_LEFTOVERS in text and "Delete the 1 left by jobs that no longer run" in text

    asked = []
    monkeypatch.setattr(leftovers, "confirm", lambda parent, question: asked.append(question) or False)
    window.run_panel._on_link(leftovers.DELETE_LEFTOVERS)
    assert asked and str(dead) in asked[0] and dead.exists()  # said no: nothing deleted

    monkeypatch.setattr(leftovers, "confirm", lambda parent, question: True)
    window.run_panel._on_link(leftovers.DELETE_LEFTOVERS)
    assert not dead.exists() and live.is_dir()  # a running job's folder is never touched
    qtbot.waitUntil(lambda: str(dead) not in window.run_panel.preflight_label.text(), timeout=60_000)
    assert Path(tmp_path / "out").exists() is False
