"""The Merge tab's output and run rules a new user met (issue 11, items 2, 3, 8, 12, 14, 16):
nothing replaced without asking, the form locked while its merge runs, a finished merge that does
not turn into a red error, a Run button that stays put, and a status bar per tab."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QPoint  # noqa: E402

from fusion_gui.ui.panels import run_panel as run_panel_module  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, Gate, after_progress, close_questions, config_dir, error_dialogs, no_leaked_windows,
    preflight, run_merge, window,
)

pytestmark = pytest.mark.gui


@pytest.fixture
def replace_questions(monkeypatch):
    """"Replace the folder?" records its question and answers as the test says, never blocking."""
    from fusion_gui.ui.dialogs.replace_dialog import replace_question

    asked: list[str] = []
    answer = {"yes": True}

    def ask(parent, folder, size):
        asked.append(replace_question(folder, size))
        return answer["yes"]

    monkeypatch.setattr(run_panel_module, "ask_replace", ask)
    return asked, answer


def old_merge(folder, size=3_000_000):
    folder.mkdir(parents=True)
    (folder / "old-weights.bin").write_bytes(b"\0" * size)
    return folder


# ---- item 2: replacing asks first, naming the folder and its size ------------------------------

def test_replacing_an_existing_folder_asks_first_with_its_name_and_size(window, qtbot, llama_family, tmp_path,
                                                                       replace_questions, error_dialogs):
    asked, answer = replace_questions
    out = old_merge(tmp_path / "precious")
    window.models_panel.add_models([str(p) for p in llama_family])
    window.run_panel.overwrite_box.setChecked(True)  # ticked from an earlier run
    answer["yes"] = False
    window.run_panel.set_output_dir(str(out))
    assert window.run_panel.start_merge() is None
    assert len(asked) == 1 and str(out) in asked[0] and "3.0 MB" in asked[0]
    assert (out / "old-weights.bin").stat().st_size == 3_000_000  # kept: the user said no
    answer["yes"] = True
    run_merge(qtbot, window, out)
    assert len(asked) == 2 and not error_dialogs
    assert not (out / "old-weights.bin").exists() and (out / "config.json").exists()  # replaced, as agreed


@pytest.mark.parametrize("where", ["is", "contains", "lies inside"])
def test_a_folder_that_is_holds_or_lies_in_an_input_is_never_replaced(window, qtbot, llama_family, tmp_path,
                                                                      replace_questions, error_dialogs, where):
    asked, _ = replace_questions
    base, ft1, ft2 = llama_family
    out = {"is": ft2, "contains": ft2.parent, "lies inside": ft2 / "sub"}[where]
    out.mkdir(exist_ok=True)
    window.models_panel.add_models([str(base), str(ft1), str(ft2)])
    window.run_panel.overwrite_box.setChecked(True)
    window.run_panel.set_output_dir(str(out))
    preflight(qtbot, window)  # says so before Run is pressed
    assert f"{where} the input" in window.run_panel.preflight_label.text()
    assert window.run_panel.start_merge() is None
    assert asked == [] and len(error_dialogs) == 1 and f"{where} the input" in error_dialogs[0][0]
    assert (ft2 / "config.json").exists()


def test_loading_the_demo_starts_a_fresh_output_choice(window, qtbot, llama_family, tmp_path, monkeypatch,
                                                       replace_questions):
    monkeypatch.setenv("FUSION_GUI_DATA_DIR", str(tmp_path / "data"))
    old_merge(tmp_path / "data" / "demo-merge")
    window.run_panel.overwrite_box.setChecked(True)
    window.run_panel.set_output_dir(str(tmp_path / "data" / "demo-merge"))
    started = []
    monkeypatch.setattr(window.run_panel, "start_merge", lambda: started.append(window.run_panel.output_dir()))
    window.start_panel.demo_ready.emit([str(p) for p in llama_family])
    assert not window.run_panel.overwrite_box.isChecked()
    assert started == [str(tmp_path / "data" / "demo-merge-2")]  # a new folder in the user data folder


# ---- item 8: after a successful merge, no red error and the plots stay --------------------------

def test_after_a_merge_the_same_folder_suggests_a_new_one_and_keeps_the_plots(window, qtbot, llama_family,
                                                                            tmp_path, error_dialogs):
    window.models_panel.add_models([str(p) for p in llama_family])
    out = tmp_path / "merged"
    run_merge(qtbot, window, out)
    assert not error_dialogs
    preflight(qtbot, window)
    text = window.run_panel.preflight_label.text()
    assert "b3261e" not in text and "--force" not in text and "Pre-flight failed" not in text  # nothing red
    assert "choose a new one" in text and f"href='{tmp_path / 'merged-2'}'" in text
    window.merge_plots.flush()
    before = window.merge_plots.layer_plot.point_counts()
    assert before
    assert window.run_panel.start_merge() is None  # refused at once, before anything is cleared
    assert "merged-2" in error_dialogs[-1][0] and "--force" not in error_dialogs[-1][0]
    window.merge_plots.flush()
    assert window.merge_plots.layer_plot.point_counts() == before
    assert window.run_panel.last_result is not None and window.run_panel.open_button.isVisibleTo(window)
    window.run_panel.preflight_label.linkActivated.emit(str(tmp_path / "merged-2"))  # the suggested name
    assert window.run_panel.output_dir() == str(tmp_path / "merged-2")


# ---- item 3: the form is locked while its merge runs ---------------------------------------------

def test_the_form_is_locked_while_its_merge_runs(window, qtbot, llama_family, tmp_path, monkeypatch):
    gate = Gate(after_progress(2))
    monkeypatch.setattr(run_panel_module, "merge_job", gate.wrap(run_panel_module.merge_job))
    window.strategy_panel.set_method("ties")
    window.models_panel.add_models([str(p) for p in llama_family])
    window.run_panel.set_output_dir(str(tmp_path / "merged"))
    recipe = window.recipe_panel.text()
    worker = window.run_panel.start_merge()
    qtbot.waitUntil(gate.reached.is_set, timeout=JOB_TIMEOUT_MS)
    assert all(not group.isEnabled() for group in window.form_groups)
    assert not window.run_panel.output_combo.isEnabled() and not window.run_panel.overwrite_box.isEnabled()
    assert not window.open_recipe_action.isEnabled()
    window.strategy_panel.set_global("density", 0.1)  # as a slider would, if it could be reached
    window.models_panel.add_models([str(tmp_path)])  # as the Extract LoRA dialog's adapter would
    assert window.recipe_panel.text() == recipe  # the recipe that runs is the one shown
    assert "merge is running" in window.statusBar().currentMessage()
    gate.open()
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    assert all(group.isEnabled() for group in window.form_groups) and window.open_recipe_action.isEnabled()
    window.strategy_panel.set_global("density", 0.1)
    assert window.recipe_panel.text() != recipe


# ---- item 16: the Run button stays where it is ---------------------------------------------------

def _settled_position(qtbot, widget, window) -> QPoint:
    """Where `widget` sits once the window's layout has stopped moving (the first layout passes can take
    longer than a fixed wait on a loaded machine)."""
    last = None
    for _ in range(100):
        qtbot.wait(50)
        here = widget.mapTo(window, QPoint(0, 0))
        if here == last:
            return here
        last = here
    return last


def test_the_run_button_does_not_move_when_warnings_come_and_go(window, qtbot):
    panel = window.run_panel
    where = _settled_position(qtbot, panel.run_button, window)
    panel.preflight_label.setText("Writes 9 tensors.<br>" + "<br>".join(f"⚠ warning {i}" for i in range(4)))
    assert _settled_position(qtbot, panel.run_button, window) == where
    panel.preflight_label.setText("")
    assert _settled_position(qtbot, panel.run_button, window) == where


# ---- items 12 and 14: the status bar follows the tab, and says a cancel --------------------------

def test_the_status_bar_says_a_cancel_after_a_success(window, qtbot, llama_family, tmp_path, monkeypatch):
    window.models_panel.add_models([str(p) for p in llama_family])
    run_merge(qtbot, window, tmp_path / "first")
    assert "Merged into" in window.statusBar().currentMessage()
    gate = Gate(after_progress(2))
    monkeypatch.setattr(run_panel_module, "merge_job", gate.wrap(run_panel_module.merge_job))
    window.run_panel.set_output_dir(str(tmp_path / "second"))
    worker = window.run_panel.start_merge()
    qtbot.waitUntil(gate.reached.is_set, timeout=JOB_TIMEOUT_MS)
    assert "Merged into" not in window.statusBar().currentMessage()
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        window.run_panel.cancel()
    assert "cancelled" in window.statusBar().currentMessage().lower()


def test_each_tab_keeps_its_own_status_message(window):
    window.say("merge message")
    window.distill_panel.message.emit("distill message")
    assert window.statusBar().currentMessage() == "merge message"  # the Merge tab is shown
    window.tabs.setCurrentWidget(window.distill_panel)
    assert window.statusBar().currentMessage() == "distill message"
    window.tabs.setCurrentWidget(window.compare_panel)
    assert window.statusBar().currentMessage() == ""  # nothing said there yet
    window.tabs.setCurrentIndex(0)
    assert window.statusBar().currentMessage() == "merge message"


# ---- recipe dialogs open where the user last was -------------------------------------------------

def test_recipe_dialogs_open_in_the_last_folder_used(window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from fusion_gui.ui.settings import remember_folder

    remember_folder(tmp_path)
    seen = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a: (seen.append(a[2]), ("", ""))[1])
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a: (seen.append(a[2]), ("", ""))[1])
    window.ask_open_recipe()
    window.ask_save_recipe()
    assert seen == [str(tmp_path), str(tmp_path / "recipe.yml")]
