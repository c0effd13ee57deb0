"""The History tab: the table of runs, search, sort by a score, open / diff / re-run a recipe, a damaged file."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QItemSelectionModel  # noqa: E402

from fusion_gui.session import MergeSession  # noqa: E402
from fusion_gui.session.history import History, InputFile, Score  # noqa: E402
from fusion_gui.ui.panels.history_panel import HistoryPanel  # noqa: E402
from helpers import screenshots_dir  # noqa: E402
from ui_helpers import close_questions, config_dir, error_dialogs, window  # noqa: E402,F401


def recipe(weight: float, models=("org/a", "org/b")) -> str:
    lines = ["merge_method: linear", "models:"]
    for m in models:
        lines += [f"- model: {m}", f"  parameters: {{weight: {weight}}}"]
    return "\n".join(lines + ["dtype: float32", ""])


@pytest.fixture
def history(tmp_path):
    h = History(tmp_path / "history.sqlite")
    h.record("merge", title="first", recipe=recipe(0.5), output="/out/first", seconds=12.0, peak_bytes=3 << 30,
             verdict="ok", inputs=[InputFile("org/a"), InputFile("org/b")], started=1000.0)
    h.record("merge", title="second", recipe=recipe(0.7), output="/out/second", seconds=61.0, started=2000.0)
    h.record("eval", title="scores", recipe="tasks/quiz.jsonl", started=3000.0,
             scores=[Score("merged", "quiz", "acc", 0.9, 50), Score("base", "quiz", "acc", 0.4, 50)])
    h.record("eval", title="scores low", recipe="tasks/quiz.jsonl", started=4000.0,
             scores=[Score("merged", "quiz", "acc", 0.2, 50)])
    yield h
    h.close()


def select(panel: HistoryPanel, rows: list[int]) -> None:
    panel.table.clearSelection()
    model = panel.table.selectionModel()
    for r in rows:
        model.select(panel.table.model().index(r, 0),
                     QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)


def test_table_search_and_sort_by_score(qtbot, history):
    panel = HistoryPanel(MergeSession(), history)
    qtbot.addWidget(panel)
    assert panel.table.rowCount() == 4
    assert [panel.table.item(i, 0).text() for i in range(4)] == ["eval", "eval", "merge", "merge"]  # newest first
    assert panel.table.item(3, 2).text() == "/out/first" and panel.table.item(3, 6).text().startswith("3")
    assert "quiz/acc 0.9" in panel.table.item(1, 3).text()
    panel.sort_combo.setCurrentIndex(panel.sort_combo.findData("quiz/acc"))
    assert [r.title for r in panel.runs][:2] == ["scores", "scores low"]  # best score first
    panel.search_edit.setText("second")
    assert [r.title for r in panel.runs] == ["second"]
    assert not panel.notice_label.text()
    panel.search_edit.setText("nothing like this")
    assert panel.table.rowCount() == 0 and "No runs match" in panel.notice_label.text()


def test_open_rerun_and_diff(qtbot, history, tmp_path):
    document = MergeSession()
    panel = HistoryPanel(document, history)
    qtbot.addWidget(panel)
    requested = []
    panel.merge_requested.connect(requested.append)
    select(panel, [3])  # the first merge
    assert panel.open_button.isEnabled() and not panel.diff_button.isEnabled()
    assert panel.open_selected()
    assert document.state.model_refs() == ["org/a", "org/b"] and requested == [False]
    select(panel, [2])
    panel.rerun_button.click()
    assert requested == [False, True]
    select(panel, [0])  # an evaluation has no merge recipe to open
    assert not panel.open_button.isEnabled()
    select(panel, [2, 3])
    assert panel.diff_button.isEnabled()
    dialog = panel.diff_selected()
    qtbot.addWidget(dialog)
    text = dialog.view.toPlainText()
    assert "-  parameters: {weight: 0.5}" in text and "+  parameters: {weight: 0.7}" in text
    assert text.index("run 1") < text.index("run 2")  # the older run is the left side
    panel.resize(1100, 500)
    panel.grab().save(str(screenshots_dir() / "history_panel.png"))
    dialog.close()


def test_damaged_history_file_the_app_still_starts(qtbot, tmp_path, monkeypatch, config_dir,  # noqa: F811
                                                  close_questions):  # noqa: F811
    monkeypatch.setenv("FUSION_GUI_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "history.sqlite").write_bytes(b"this is not a database" * 100)
    from fusion_gui.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    notice = win.history_panel.notice_label.text()
    assert "damaged" in notice and not win.history_panel.notice_label.isHidden()
    assert win.tabs.tabText(win.tabs.indexOf(win.history_panel)) == "History"
    win.history_panel.merge_requested.emit(True)
    assert win.tabs.currentIndex() == 0 and win.run_panel.output_combo.currentText() == ""


def test_a_finished_merge_is_recorded_and_listed(qtbot, tmp_path):
    from fusion_gui.events import MergeResult, SmokeVerdict

    history = History(tmp_path / "h.sqlite")
    panel = HistoryPanel(MergeSession(), history)
    qtbot.addWidget(panel)
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "model.safetensors").write_bytes(b"x" * 10)
    result = MergeResult(str(tmp_path / "out"), 3, 10, 1, 2.0, 5 << 20, (), SmokeVerdict("suspicious", ("why",)))
    panel.record_merge(result, recipe(0.5, models=(str(inp),)), [str(inp)], None).join(30)
    panel.refresh()
    assert panel.table.rowCount() == 1 and panel.table.item(0, 4).text() == "suspicious"
    run = panel.runs[0]
    assert run.inputs[0].content_hash and run.peak_bytes == 5 << 20
    history.close()


def test_a_finished_distillation_is_recorded(qtbot, tmp_path):
    from fusion_gui.events import DistillResult

    history = History(tmp_path / "h.sqlite")
    panel = HistoryPanel(MergeSession(), history)
    qtbot.addWidget(panel)
    assert "No runs yet" in panel.notice_label.text()
    config = {"teacher": "org/teacher", "student": "org/student", "data": {"path": "t.txt"}}
    panel.record_distill(DistillResult(str(tmp_path / "s"), 5, 1.0), config).join(30)
    panel.refresh()
    run = panel.runs[0]
    assert run.kind == "distill" and "teacher: org/teacher" in run.recipe
    assert [(i.role, i.path) for i in run.inputs] == [("teacher", "org/teacher"), ("student", "org/student")]
    assert not panel.notice_label.text()
    history.close()
