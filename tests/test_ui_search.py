"""The Search tab (pytest-qt, offscreen): the form round-trips its YAML, a tiny real search on the demo models
fills the plots and the table, the table sorts, a clicked trial opens in the Merge view, trials of another
worker in the storage appear, pause / resume / cancel leave the app usable, and bad settings show a sentence."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402

from helpers import drain  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, close_questions, config_dir, error_dialogs, no_leaked_windows, save_screenshot, window,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's base and two fine-tunes, tiny (two layers): a search's trials take a second or two."""
    from fusion_gui.engine.evaluate.demo import DemoSpec, build_demo

    spec = DemoSpec(layers=2, hidden=32, pretrain_steps=12, finetune_steps=6, batch=8)
    return drain(build_demo(tmp_path_factory.mktemp("demo") / "models", spec))[0]


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    """Perplexity text in the demo's alphabet: it differs from candidate to candidate (the tiny demo's skill
    scores are all zero), so the plots have something to show."""
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text("".join(f"{i * 7919 % 100000}>{(i * 31) % 997}\nabcd<dcba\n" for i in range(60)))
    return path


def demo_merge(window, demo):
    from fusion_gui.engine.evaluate.demo_merge import demo_recipe

    window.document.load_recipe(demo_recipe(demo.base, [demo.count, demo.reverse]))


def set_up(window, demo, text, tmp_path, objectives=("perplexity",), sampler="grid", trials=4):
    """The demo merge copied into the Search tab; objectives picked in the form as a user would."""
    panel = window.search_panel
    window.tabs.setCurrentWidget(panel)
    window.session.evaluate.text_file = str(text)  # the Evaluate tab's text: perplexity on it is a choice
    demo_merge(window, demo)
    assert panel.copy_from_merge(), panel.error_label.text()
    form = panel.form
    form.fill_objectives()
    for combo, wanted in zip((form.objective_1, form.objective_2), objectives):
        index = next(i for i in range(combo.count()) if combo.itemText(i).startswith(wanted))
        combo.setCurrentIndex(index)
    form.sampler.setCurrentIndex(form.sampler.findData(sampler))
    form.grid_points.setValue(3)
    form.trials.setValue(trials)
    form.examples.setValue(6)
    form.held_out.setValue(6)
    form.output_row.setText(str(tmp_path / "search"))
    return panel


def run_search(qtbot, panel, resume=False):
    worker = panel.start(resume=resume)
    assert worker is not None, panel.error_label.text()
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    panel.plots.flush()
    return worker


# --- the form --------------------------------------------------------------------------------

def test_form_round_trips_the_settings_yaml(window, demo, text, tmp_path):
    panel = set_up(window, demo, text, tmp_path, objectives=("count", "perplexity"), sampler="nsga2", trials=40)
    form = panel.form
    form.layer_granularity.setValue(1)
    form.minutes.setValue(2.5)
    form.tune_table.cellWidget(0, 1).setCurrentIndex(form.tune_table.cellWidget(0, 1).findData("layer"))
    form.tune_table.cellWidget(0, 3).setValue(1.25)
    window.resize(1280, 800)
    save_screenshot(window, "search-form.png")  # before any trial: what a user sees first
    saved = panel.save_settings(tmp_path / "search.yml")
    written = dict(panel.session.settings)
    assert written["layer_granularity"] == 1 and written["examples"] == 6 and written["held_out"] == 6
    assert written["budget"] == {"trials": 40, "seconds": 150.0} and written["sampler"] == "nsga2"
    assert written["objectives"] == ["count", {"task": "perplexity", "file": str(text)}]
    assert written["tune"] == [{"name": "weight", "scope": "layer", "low": 0.0, "high": 1.25, "start": 0.8}]
    assert written["method"] == "task_arithmetic" and written["models"] == [str(demo.count), str(demo.reverse)]

    from fusion_gui.engine.search.settings import check_settings, load_settings

    check_settings(load_settings(saved))  # the command line reads what the app wrote
    panel.session.replace_settings({})  # everything back to the defaults, then the file again
    assert form.layer_granularity.value() == 0 and form.tune_table.rowCount() == 0
    assert panel.load_settings(saved)
    assert {k: v for k, v in panel.session.settings.items() if k not in ("objectives",)} == \
        {k: v for k, v in written.items() if k not in ("objectives",)}
    assert panel.session.objectives == ["count", "perplexity"]
    assert form.layer_granularity.value() == 1 and form.objective_2.currentText().startswith("perplexity")
    assert form.tune_table.rowCount() == 1 and form.tune_table.cellWidget(0, 3).value() == 1.25
    assert form.minutes.value() == 2.5 and form.trials.value() == 40


def test_a_bad_settings_file_shows_one_sentence_and_changes_nothing(window, tmp_path):
    panel = window.search_panel
    before = dict(panel.session.settings)
    bad = tmp_path / "bad.yml"
    bad.write_text("method: linear\nmodels: [a, b]\ntune: [{name: weight}]\nobjectives: [count]\npopulation: 8\n")
    assert not panel.load_settings(bad)
    assert not panel.error_label.isHidden() and "population" in panel.error_label.text()
    assert panel.session.settings == before


def test_bounds_that_exclude_every_value_show_their_sentence(window, demo, text, tmp_path):
    panel = set_up(window, demo, text, tmp_path)
    form = panel.form
    form.tune_table.cellWidget(0, 0).setCurrentText("density")  # density takes [0, 1]
    form.tune_table.cellWidget(0, 2).setValue(1.2)
    form.tune_table.cellWidget(0, 3).setValue(1.5)
    assert panel.start() is None
    assert "leave no valid value" in panel.error_label.text()
    assert not panel.runner.running and panel.start_button.isEnabled() and panel.form.isEnabled()
    form.output_row.setText("")
    assert panel.start() is None and "output folder" in panel.error_label.text()


# --- a real search ---------------------------------------------------------------------------

def test_a_tiny_search_fills_the_plots_and_the_table_and_opens_a_trial(window, demo, text, tmp_path, qtbot):
    panel = set_up(window, demo, text, tmp_path, objectives=("perplexity", "count"))
    run_search(qtbot, panel)
    assert "budget of 4 trials is spent" in panel.status_label.text(), panel.status_label.text()
    counts = panel.plots.point_counts()
    assert counts["scores"] == 2 * 4 and counts["grid"] == 4 and counts["pareto_all"] == 4
    assert 1 <= counts["front"] <= 4 and counts["param_curves"] == 2
    assert panel.table.trials.rowCount() == 4
    assert panel.table.trials.columns()[:4] == ["Trial", "State", "perplexity", "count"]
    best = panel.session.best()  # lowest perplexity
    assert best.held_out and best.held_out[0] > 0
    assert (tmp_path / "search" / "best-recipe.yml").is_file()
    runs = window.session.history.runs("search")
    assert runs and runs[0].status == "done" and str(tmp_path / "search") in runs[0].output
    window.tabs.setCurrentWidget(window.history_panel)  # the History tab opens the search's best recipe
    window.history_panel.kind_combo.setCurrentIndex(window.history_panel.kind_combo.findData("search"))
    window.history_panel.table.selectRow(0)
    assert window.history_panel.open_selected() and window.tabs.currentIndex() == 0
    weights = {m.model: m.parameters["weight"] for m in window.document.recipe().models}
    assert weights == {str(demo.count): best.params["weight/count"], str(demo.reverse): best.params["weight/reverse"]}
    window.tabs.setCurrentWidget(panel)

    column = panel.table.trials.columns().index("perplexity")
    panel.table.sortByColumn(column, Qt.SortOrder.AscendingOrder)
    order = panel.table.numbers_in_view_order()
    values = [panel.session.trials[n].scores[0] for n in order]
    assert values == sorted(values) and order[0] == best.number
    panel.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
    assert panel.table.numbers_in_view_order() == [3, 2, 1, 0]

    window.resize(1280, 800)
    for index, name in ((0, "search-scores"), (1, "search-grid"), (2, "search-pareto"), (3, "search-best-params")):
        panel.plots.setCurrentIndex(index)
        save_screenshot(window, f"{name}.png")

    with open(panel.trial_bar.write_csv(tmp_path / "trials.csv"), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:4] == ["trial", "state", "perplexity", "count"] and len(rows) == 5

    dots = panel.plots._dots[0]  # a click on a point opens that trial in the Merge view
    trial = panel.session.trials[2]
    point = next(p for p in dots.points() if p.data() == 2)
    dots.sigClicked.emit(dots, [point], None)
    assert window.tabs.currentIndex() == 0
    weights = {m.model: m.parameters["weight"] for m in window.document.recipe().models}
    assert weights == {str(demo.count): 1.5, str(demo.reverse): 0.0} == {
        str(demo.count): trial.params["weight/count"], str(demo.reverse): trial.params["weight/reverse"]}

    window.tabs.setCurrentWidget(panel)  # a double-clicked row too
    index = panel.table.proxy.mapFromSource(panel.table.trials.index(panel.table.trials._row_of[1], 0))
    panel.table.doubleClicked.emit(index)
    weights = {m.model: m.parameters["weight"] for m in window.document.recipe().models}
    assert weights == {str(demo.count): 0.0, str(demo.reverse): 1.5}

    # another worker's trial in the shared storage appears when the storage is read
    import optuna

    study = optuna.load_study(study_name="search", storage=panel.session.storage_path())
    study.add_trial(optuna.trial.create_trial(
        params={"weight/count": 0.75, "weight/reverse": 0.75}, values=[90.0, 0.0],
        distributions={k: optuna.distributions.FloatDistribution(0.0, 1.5) for k in ("weight/count", "weight/reverse")},
        user_attrs={"scores": {"perplexity": 90.0, "count": 0.0}, "worker": "gpu-box:4242"}))
    window.tabs.setCurrentWidget(panel)  # shown, the tab reads its storage every few seconds
    assert panel.poll_timer.isActive()
    panel.poll()
    qtbot.waitUntil(lambda: panel.table.trials.rowCount() == 5, timeout=JOB_TIMEOUT_MS)
    other = next(t for t in panel.session.trials.values() if t.worker == "gpu-box:4242")  # grid points wait as 4-8
    assert other.scores == (90.0, 0.0) and panel.session.best().number == other.number

    assert panel.start() is None  # a new search would mix with the stored one: Resume is the way on
    assert "already holds a search" in panel.error_label.text() and "Resume" in panel.error_label.text()
    panel.form.output_row.setText(str(tmp_path / "elsewhere"))  # another folder: its (no) trials are shown
    panel.poll()
    assert panel.table.trials.rowCount() == 0 and not panel.session.trials


def test_pause_resume_and_cancel_leave_the_app_usable(window, demo, text, tmp_path, qtbot):
    panel = set_up(window, demo, text, tmp_path, sampler="cmaes", trials=6)
    worker = panel.start()
    qtbot.waitUntil(lambda: any(t.state == "complete" for t in panel.session.trials.values()), timeout=JOB_TIMEOUT_MS)
    assert not panel.form.isEnabled() and panel.pause_button.isEnabled()
    panel.plots.flush()
    window.resize(1280, 800)
    save_screenshot(window, "search-running.png")
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        panel.pause_button.click()
    assert "Paused after" in panel.status_label.text(), panel.status_label.text()
    assert panel.resume_button.isEnabled() and panel.form.isEnabled()
    paused_at = len(panel.session.trials)

    worker = panel.start(resume=True)
    assert worker is not None, panel.error_label.text()
    qtbot.waitUntil(lambda: len(panel.session.trials) > paused_at, timeout=JOB_TIMEOUT_MS)
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        panel.cancel_button.click()
    assert "Cancelled after" in panel.status_label.text(), panel.status_label.text()
    assert panel.form.isEnabled() and panel.start_button.isEnabled() and panel.resume_button.isEnabled()
    assert not panel.error_label.text()
    assert all(t.state != "running" for t in panel.session.trials.values())
    statuses = {r.status for r in window.session.history.runs("search")}
    assert {"paused", "cancelled"} <= statuses
    window.tabs.setCurrentIndex(0)
    assert window.models_panel.isEnabled() and not window.document.locked  # the rest of the app is untouched

    # as after closing the app: nothing in the form; the folder brings back the settings and the trials
    kept = {n for n, t in panel.session.trials.items() if t.state == "complete"}
    window.tabs.setCurrentWidget(panel)
    panel.session.replace_settings({})
    panel.form.output_row.setText("")
    panel.session.clear_trials()
    with qtbot.waitSignal(panel.opener.result, timeout=JOB_TIMEOUT_MS):
        panel.reopen(tmp_path / "search")
    assert panel.session.settings["method"] == "task_arithmetic" and panel.session.objectives == ["perplexity"]
    qtbot.waitUntil(lambda: kept <= set(panel.session.trials), timeout=JOB_TIMEOUT_MS)
    run_search(qtbot, panel, resume=True)
    assert "budget of 6 trials is spent" in panel.status_label.text(), panel.status_label.text()
    assert (tmp_path / "search" / "best-recipe.yml").is_file()
    assert panel.reopen(tmp_path / "nothing-here") is not None
    qtbot.waitUntil(lambda: "no search in" in panel.error_label.text().lower(), timeout=JOB_TIMEOUT_MS)

