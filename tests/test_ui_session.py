"""What a new user met (issue: settings that change by themselves, and more), on the app layer:
opening recipes all or nothing, relative model paths, nothing that looks like an error at first."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from fusion_gui.ui.panels.run_panel import NOTHING_TO_PLAN, PREFLIGHT_DELAY_MS  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    close_questions, config_dir, error_dialogs, no_leaked_windows, preflight, window,
)

pytestmark = pytest.mark.gui


def form_snapshot(window) -> tuple:
    return (window.recipe_panel.text(), window.strategy_panel.method_combo.currentData(),
            window.models_panel.display_refs())


@pytest.mark.parametrize("text, reason", [
    ("merge_method: tie\nbase_model: a\nmodels: [a, b]\n", "tie"),  # an unknown method
    ("merge_method: ties\nmodels: [a, b]\nfoo: 1\n", "foo"),  # an unknown key
    ("merge_method: ties\nmodels: [a, b\n", "YAML"),  # broken YAML
])
def test_a_recipe_that_does_not_load_leaves_everything_as_it_was(window, llama_family, tmp_path, error_dialogs,
                                                                   text, reason):
    base, ft1, _ = map(str, llama_family)
    window.strategy_panel.set_method("task_arithmetic")
    window.models_panel.add_models([base, ft1])
    window.strategy_panel.set_global("lambda", 0.7)
    before = form_snapshot(window)
    path = tmp_path / "bad.yml"
    path.write_text(text)
    assert not window.open_recipe(path)
    assert len(error_dialogs) == 1 and reason in error_dialogs[0][0]  # it says why
    assert form_snapshot(window) == before  # the form, the YAML view and the models are as they were


def test_a_misspelt_parameter_is_shown_and_survives_choosing_a_method(window, tmp_path, error_dialogs):
    path = tmp_path / "typo.yml"
    path.write_text("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n"
                    "    parameters: {weight: 1, desnity: 0.3}\n")
    assert window.open_recipe(path)
    note = window.strategy_panel.unknown_note
    assert note.isVisibleTo(window) and "'desnity'" in note.text()
    assert "desnity" in window.statusBar().currentMessage()
    window.strategy_panel.set_method("dare_ties")
    assert window.document.recipe().models[0].parameters["desnity"] == 0.3  # never dropped silently
    assert "'desnity'" in window.strategy_panel.unknown_note.text()
    window.strategy_panel.unknown_button.click()  # the user removes it, knowingly
    assert "desnity" not in window.recipe_panel.text()
    assert not window.strategy_panel.unknown_note.isVisibleTo(window)


def test_relative_model_paths_resolve_against_the_recipe_folder(window, llama_family, tmp_path, monkeypatch,
                                                                error_dialogs):
    folder = llama_family[0].parent
    names = [p.name for p in llama_family]
    recipe = folder / "relative.yml"
    recipe.write_text(f"merge_method: task_arithmetic\nbase_model: ./{names[0]}\nmodels:\n"
                      f"  - model: ./{names[1]}\n  - model: ./{names[2]}\n")
    monkeypatch.chdir(tmp_path)  # the app was started somewhere else
    try:
        assert window.open_recipe(recipe)
    finally:
        recipe.unlink()
    assert error_dialogs == []
    assert window.document.state.base_model == str(llama_family[0])
    assert window.models_panel.problems() == {}  # every model can be read
    status = window.statusBar().currentMessage()
    assert f"./{names[1]}" in status and str(folder) in status  # and the app says what it did


def test_the_first_screen_says_what_to_do_and_nothing_looks_like_an_error(window, qtbot, llama_family,
                                                                          error_dialogs, tmp_path):
    def shows_no_error() -> bool:
        text = window.run_panel.preflight_label.text()
        return "b3261e" not in text and "failed" not in text.lower() and "error" not in text.lower()

    qtbot.wait(PREFLIGHT_DELAY_MS + 300)  # long enough for a scheduled pre-flight to have answered
    assert window.run_panel.preflight_label.text() == NOTHING_TO_PLAN and shows_no_error()
    assert window.run_panel.preflight_runner.worker is None  # nothing to plan: no job at all

    window.models_panel.add_models([str(p) for p in llama_family])
    assert preflight(qtbot, window) is not None
    for ref in list(window.document.state.model_refs()):
        window.models_panel.remove_model(ref)
    qtbot.wait(PREFLIGHT_DELAY_MS + 300)
    assert window.run_panel.preflight_label.text() == NOTHING_TO_PLAN and shows_no_error()
    assert window.run_panel.preflight() is None
    window.run_panel.set_output_dir(str(tmp_path / "out"))
    assert window.run_panel.start_merge() is None  # Run with nothing loaded says what to do first
    assert error_dialogs == [("Add the models to merge first.", "")]


def test_the_preflight_runs_on_a_worker_not_the_gui_thread(window, qtbot, llama_family, monkeypatch):
    import threading

    from fusion_gui.engine import merge as merge_package

    threads = []
    real = merge_package.plan_merge

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(merge_package, "plan_merge", recording)
    window.models_panel.add_models([str(p) for p in llama_family])
    assert preflight(qtbot, window) is not None
    assert threads and threading.main_thread() not in threads


def test_the_distill_form_writes_its_session_state(window, tmp_path):
    seen = []
    state = window.session.distill
    state.events.config.connect(seen.append)
    window.distill_panel.max_steps.setValue(17)
    assert state.config["training"]["max_steps"] == 17 and seen[-1]["training"]["max_steps"] == 17
    window.distill_panel.output_row.setText(str(tmp_path / "student-out"))
    assert state.out_dir == str(tmp_path / "student-out")


def test_compare_and_evaluate_bind_to_their_session_state(window):
    window.session.compare.choose("/m/a", "/m/b", "/m/base")
    assert (window.compare_panel.model_a.text(), window.compare_panel.base.text()) == ("/m/a", "/m/base")
    window.compare_panel.model_b.set_text("/m/typed")
    assert window.session.compare.model_b == "/m/typed"
    window.session.evaluate.set_models(["/m/x"])
    assert "x" in window.eval_panel.models_label.text()
    window.eval_panel.prompt_edit.setText("abc<")
    assert window.session.evaluate.prompt == "abc<"
