"""The Evaluate panel and the start screen's demo button (pytest-qt, offscreen)."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("pytestqt")

from fusion_gui.ui.panels.eval_panel import EvalPanel  # noqa: E402
from fusion_gui.ui.panels.start_panel import StartPanel  # noqa: E402
from test_demo_eval import SMALL, demo_models  # noqa: E402,F401 - the shared session build
from ui_helpers import close_questions, config_dir, error_dialogs, no_leaked_windows, run_merge, window  # noqa: E402,F401

TIMEOUT_MS = 180_000


def test_eval_panel_fills_its_table_and_saves_csv(qtbot, demo_models, tmp_path):  # noqa: F811
    panel = EvalPanel()
    qtbot.addWidget(panel)
    panel.set_models([str(demo_models.count), str(demo_models.reverse)])
    panel.prompt_edit.setText("abc<")
    with qtbot.waitSignal(panel.evaluated, timeout=TIMEOUT_MS) as blocker:
        assert panel.start() is not None
        assert not panel.run_button.isEnabled()  # one run at a time
    result = blocker.args[0]
    assert panel.table.rowCount() == 2 and panel.table.columnCount() == 2
    cells = {(r.model, r.metric): r.value for r in result.rows}
    assert panel.cell_text("count", "count") == f"{100 * cells[('count', 'count')]:.0f}%"
    assert cells[("count", "count")] > cells[("reverse", "count")]
    assert "greedy:\nabc<cba" in panel.generations.text_of("reverse")
    qtbot.waitUntil(panel.run_button.isEnabled, timeout=TIMEOUT_MS)
    assert panel.save_button.isEnabled()
    panel.save_csv(str(tmp_path / "e.csv"))
    rows = list(csv.DictReader(open(tmp_path / "e.csv")))
    assert [r["model"] for r in rows] == ["count", "reverse"]
    assert float(rows[1]["reverse"]) == pytest.approx(cells[("reverse", "reverse")])


def test_start_panel_builds_the_demo_and_hands_over_three_folders(qtbot, tmp_path, monkeypatch):
    import fusion_gui.ui.panels.start_panel as start

    # a small build keeps the test fast; the full build is tested in test_demo_eval.py
    monkeypatch.setattr(start, "build_demo", lambda root, cancel=None: start_build(root, cancel))

    def start_build(root, cancel):
        from fusion_gui.engine.evaluate.demo import build_demo

        return build_demo(root, SMALL, cancel=cancel)

    panel = StartPanel(root=tmp_path / "demo-models")
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.demo_ready, timeout=TIMEOUT_MS) as blocker:
        panel.start_demo()
    refs = blocker.args[0]
    assert [r.rsplit("/", 1)[-1] for r in refs] == ["base", "count", "reverse"]
    assert all((tmp_path / "demo-models" / n / "config.json").exists() for n in ("base", "count", "reverse"))
    assert panel.progress_bar.value() == 1000 and "built in" in panel.status_label.text()
    qtbot.waitUntil(panel.demo_button.isEnabled, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(panel.demo_ready, timeout=TIMEOUT_MS):
        panel.start_demo()  # the second time it reuses the folders
    assert "already built" in panel.status_label.text()


def test_window_demo_runs_on_through_the_merge_to_the_scores(qtbot, window, demo_models, tmp_path,  # noqa: F811
                                                             error_dialogs, monkeypatch):
    """Issue 11, item 15: one click path from the demo models to their scores, nothing to find by hand."""
    monkeypatch.setenv("FUSION_GUI_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data" / "demo-merge").mkdir(parents=True)  # an earlier demo's merge is never replaced
    window.run_panel.overwrite_box.setChecked(True)  # left ticked from an earlier run
    assert window.start_panel.isVisible()  # the empty start screen
    with qtbot.waitSignal(window.eval_panel.evaluated, timeout=TIMEOUT_MS) as blocker:
        window.start_panel.demo_ready.emit([str(p) for p in demo_models.paths])  # as "Try the demo" does
        state = window.document.state
        assert state.method == "task_arithmetic" and state.base_model == str(demo_models.base)
        assert set(state.model_refs()) == {str(p) for p in demo_models.paths}
        assert not window.start_panel.isVisible()  # models are loaded: the start screen steps aside
        assert window.run_panel.runner.running  # the merge started by itself
    out = tmp_path / "data" / "demo-merge-2"
    assert not error_dialogs
    assert list((tmp_path / "data" / "demo-merge").iterdir()) == []  # untouched
    assert window.run_panel.last_result.out_dir == str(out)
    assert window.tabs.currentWidget() is window.eval_panel
    assert window.eval_panel.models[0] == str(out)  # the result first, then its inputs
    assert set(window.eval_panel.models[1:]) == {str(p) for p in demo_models.paths}
    score = {(r.model, r.metric): r.value for r in blocker.args[0].rows}
    assert score[("demo-merge-2", "count")] >= 0.5 > score[("reverse", "count")]
    assert window.eval_panel.cell_text("demo-merge-2", "count") not in (None, "", "-")
