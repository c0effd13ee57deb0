"""The Search tab (pytest-qt, offscreen): the form round-trips its YAML, a search fills the plots and the
table, the table sorts, a clicked trial opens in the Merge view, cancel and bad settings leave the app usable."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402

from fusion_gui.engine.errors import Cancelled, InputError  # noqa: E402
from fusion_gui.session.search import SearchSession, TrialRow, pareto_front  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, close_questions, config_dir, error_dialogs, no_leaked_windows, save_screenshot, window,
)

BASE, FT1, FT2 = "/models/base", "/models/count", "/models/reverse"


@dataclass(frozen=True)
class FakeTrialFinished:
    number: int
    params: dict
    scores: tuple
    state: str = "complete"
    seconds: float = 0.01
    worker: str = "here"


@dataclass(frozen=True)
class FakeHeldOut:
    number: int
    held_out: tuple


@dataclass(frozen=True)
class FakeStopped:
    reason: str


@dataclass
class FakeEngine:
    """Stands in for fusion_gui.engine.search until it lands: a 2-D grid over both fine-tunes' weights,
    scored by a smooth function with a known best (0.8, 0.6)."""

    delay: float = 0.0
    storage_rows: list = field(default_factory=list)  # what "other workers" put in the storage

    @staticmethod
    def scores(a: float, b: float) -> tuple:
        return (1.0 - (a - 0.8) ** 2 - (b - 0.6) ** 2, 1.0 - (a - 0.2) ** 2 - (b - 0.9) ** 2)

    def run(self, settings, out_dir, token):
        n = int(settings["grid_points"])
        values = [round(i / (n - 1), 4) for i in range(n)]
        number = 0
        for a in values:
            for b in values:
                if number >= int(settings["trials"]):
                    break
                if token.cancelled:
                    raise Cancelled("Cancelled by the user.")
                time.sleep(self.delay)
                params = {f"weight@{FT1}": a, f"weight@{FT2}": b}
                yield FakeTrialFinished(number, params, self.scores(a, b)[: len(settings["objectives"])])
                number += 1
        yield FakeHeldOut(0, (0.5,) * len(settings["objectives"]))
        yield FakeStopped("The trial budget is spent.")
        return {"trials": number}

    @staticmethod
    def check(settings):
        for entry in settings["tune"]:
            if entry["low"] >= entry["high"]:
                raise InputError(f"The bounds of '{entry['parameter']}' are empty: low {entry['low']} is not "
                                 f"below high {entry['high']}.")

    @staticmethod
    def recipe(settings, params):
        from fusion_gui.engine.merge.recipe import recipe_from_dict

        recipe = dict(settings["recipe"])
        recipe["models"] = [{"model": m["model"], "parameters": {"weight": params[f"weight@{m['model']}"]}}
                            for m in recipe["models"]]
        return recipe_from_dict(recipe)


@pytest.fixture
def engine(monkeypatch):
    from fusion_gui.session import search_engine
    from fusion_gui.ui.panels import search_panel

    fake = FakeEngine()
    monkeypatch.setattr(search_panel, "search_job", fake.run)
    monkeypatch.setattr(search_panel, "check_settings", fake.check)
    monkeypatch.setattr(search_panel, "list_trials", lambda settings, storage, objectives: list(fake.storage_rows))
    monkeypatch.setattr(search_engine, "recipe_for_params", fake.recipe)
    return fake


def demo_merge(window):
    from fusion_gui.engine.evaluate.demo_merge import demo_recipe

    window.document.load_recipe(demo_recipe(BASE, [FT1, FT2]))


def set_up(window, tmp_path, objectives=("count",), sampler="grid2d", trials=9):
    panel = window.search_panel
    window.tabs.setCurrentWidget(panel)
    demo_merge(window)
    assert panel.copy_from_merge(), panel.error_label.text()
    session = panel.session
    session.set("objectives", list(objectives))
    session.set("sampler", sampler)
    session.set("grid_points", 3)
    session.set("trials", trials)
    panel.form.output_row.setText(str(tmp_path / "search"))
    return panel


def run_search(qtbot, panel):
    worker = panel.start()
    assert worker is not None, panel.error_label.text()
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    panel.plots.flush()
    return worker


# --- Qt-free pieces --------------------------------------------------------------------------

def test_pareto_front_keeps_only_unbeaten_trials():
    points = [(0, (0.9, 0.1)), (1, (0.5, 0.5)), (2, (0.4, 0.4)), (3, (0.1, 0.9)), (4, (0.5, 0.5))]
    assert sorted(pareto_front(points, (True, True))) == [0, 1, 3, 4]
    assert sorted(pareto_front(points, (True, False))) == [0]  # lower second objective is better


def test_session_keeps_a_finished_trial_over_a_late_running_copy():
    session = SearchSession()
    session.add_trials([TrialRow(1, {"w": 0.5}, (0.7,), state="complete")])
    assert session.add_trials([TrialRow(1, {"w": 0.5}, (), state="running")]) == []
    assert session.trials[1].scores == (0.7,)


# --- the form --------------------------------------------------------------------------------

def test_form_round_trips_the_settings_yaml(window, tmp_path):
    panel = window.search_panel
    demo_merge(window)
    assert panel.copy_from_merge()
    form = panel.form
    form.layer_groups.setValue(6)
    form.held_out.setValue(0.25)
    form.trials.setValue(40)
    form.sampler.setCurrentIndex(form.sampler.findData("cmaes"))
    form.objective_1.setCurrentText("count")
    form.objective_2.setCurrentText("reverse")
    form.tune_table.cellWidget(0, 1).setCurrentIndex(form.tune_table.cellWidget(0, 1).findData("layers"))
    form.tune_table.cellWidget(0, 3).setValue(1.25)
    saved = panel.save_settings(tmp_path / "search.yml")
    written = dict(panel.session.settings)
    assert written["layer_groups"] == 6 and written["held_out"] == 0.25 and written["trials"] == 40
    assert written["objectives"] == ["count", "reverse"] and written["sampler"] == "cmaes"
    assert written["tune"] == [{"parameter": "weight", "scope": "layers", "low": 0.0, "high": 1.25}]
    assert written["recipe"]["merge_method"] == "task_arithmetic"

    panel.session.replace_settings({})  # everything back to defaults, then the file again
    assert form.layer_groups.value() == 4 and form.tune_table.rowCount() == 0
    assert panel.load_settings(saved)
    assert panel.session.settings == written
    assert form.layer_groups.value() == 6 and form.objective_2.currentText() == "reverse"
    assert form.tune_table.rowCount() == 1 and form.tune_table.cellWidget(0, 3).value() == 1.25


def test_a_bad_settings_file_shows_one_sentence_and_changes_nothing(window, tmp_path):
    panel = window.search_panel
    before = dict(panel.session.settings)
    bad = tmp_path / "bad.yml"
    bad.write_text("trials: 10\npopulation: 8\n")
    assert not panel.load_settings(bad)
    assert not panel.error_label.isHidden() and "population" in panel.error_label.text()
    assert panel.session.settings == before


def test_bad_bounds_show_their_sentence_and_start_nothing(window, tmp_path, engine):
    panel = set_up(window, tmp_path)
    panel.form.tune_table.cellWidget(0, 2).setValue(1.0)
    panel.form.tune_table.cellWidget(0, 3).setValue(0.5)
    assert panel.start() is None
    assert "bounds of 'weight' are empty" in panel.error_label.text()
    assert not panel.runner.running and panel.start_button.isEnabled() and panel.form.isEnabled()


def test_no_output_folder_is_named_before_anything_runs(window, tmp_path, engine):
    panel = set_up(window, tmp_path)
    panel.form.output_row.setText("")
    assert panel.start() is None
    assert "output folder" in panel.error_label.text()


# --- a search --------------------------------------------------------------------------------

def test_a_grid_search_fills_the_plots_and_the_table(window, tmp_path, engine, qtbot):
    panel = set_up(window, tmp_path, objectives=("count", "reverse"))
    run_search(qtbot, panel)
    counts = panel.plots.point_counts()
    assert counts["scores"] == 2 * 9 and counts["grid"] == 9 and counts["pareto_all"] == 9
    assert 1 <= counts["front"] < 9 and counts["param_curves"] == 2
    assert panel.table.trials.rowCount() == 9
    assert panel.table.trials.columns()[:4] == ["Trial", "State", "count", "reverse"]
    assert panel.session.trials[0].held_out == (0.5, 0.5)
    assert "budget is spent" in panel.status_label.text() or "Search done" in panel.status_label.text()
    best = panel.session.best()
    assert (best.params[f"weight@{FT1}"], best.params[f"weight@{FT2}"]) == (1.0, 0.5)  # nearest to (0.8, 0.6)
    window.resize(1280, 800)
    panel.plots.setCurrentIndex(1)
    save_screenshot(window, "search-grid.png")
    panel.plots.setCurrentIndex(2)
    save_screenshot(window, "search-pareto.png")

    with open(panel.write_csv(tmp_path / "trials.csv"), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:4] == ["trial", "state", "count", "reverse"] and len(rows) == 10
    written = panel.write_recipe(None, tmp_path / "best.yml")
    assert "weight: 1.0" in written.read_text() and "weight: 0.5" in written.read_text()


def test_sorting_by_a_score_column_orders_the_rows(window, tmp_path, engine, qtbot):
    panel = set_up(window, tmp_path)
    run_search(qtbot, panel)
    column = panel.table.trials.columns().index("count")
    panel.table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    order = panel.table.numbers_in_view_order()
    scores = [panel.session.trials[n].scores[0] for n in order]
    assert scores == sorted(scores, reverse=True) and order[0] == panel.session.best().number
    panel.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    assert panel.table.numbers_in_view_order() == list(range(9))


def test_clicking_a_trial_opens_its_recipe_in_the_merge_view(window, tmp_path, engine, qtbot):
    panel = set_up(window, tmp_path)
    run_search(qtbot, panel)
    panel.plots.setCurrentIndex(0)
    dots = panel.plots._dots[0]
    point = next(p for p in dots.points() if p.data() == 4)
    dots.sigClicked.emit(dots, [point], None)
    assert window.tabs.currentIndex() == 0  # the Merge tab is shown
    weights = {m.model: m.parameters["weight"] for m in window.document.recipe().models}
    assert weights == {FT1: 0.5, FT2: 0.5}  # trial 4 of the 3x3 grid
    index = panel.table.proxy.mapFromSource(panel.table.trials.index(7, 0))
    panel.table.doubleClicked.emit(index)
    weights = {m.model: m.parameters["weight"] for m in window.document.recipe().models}
    assert weights == {FT1: 1.0, FT2: 0.5}


def test_trials_of_other_workers_in_the_storage_appear(window, tmp_path, engine, qtbot):
    panel = set_up(window, tmp_path)
    storage = tmp_path / "shared.sqlite"
    storage.write_bytes(b"")  # the study's file exists: the poller reads it
    panel.session.set("storage", f"sqlite:///{storage}")
    engine.storage_rows = [TrialRow(100, {f"weight@{FT1}": 0.3, f"weight@{FT2}": 0.3}, (0.2,), worker="gpu-box")]
    worker = panel.poll()
    assert worker is not None
    qtbot.waitUntil(lambda: 100 in panel.session.trials, timeout=JOB_TIMEOUT_MS)
    qtbot.waitUntil(lambda: panel.table.trials.rowCount() == 1)
    assert panel.table.trials.rows[0].worker == "gpu-box"


def test_cancel_leaves_the_app_usable_and_resume_continues(window, tmp_path, engine, qtbot):
    engine.delay = 0.05
    panel = set_up(window, tmp_path, trials=9)
    worker = panel.start()
    qtbot.waitUntil(lambda: len(panel.session.trials) >= 2, timeout=JOB_TIMEOUT_MS)
    assert not panel.form.isEnabled() and panel.pause_button.isEnabled()
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        panel.cancel_button.click()
    assert "Cancelled after" in panel.status_label.text()
    assert panel.form.isEnabled() and panel.start_button.isEnabled() and panel.resume_button.isEnabled()
    assert len(panel.session.trials) < 9
    window.tabs.setCurrentIndex(0)
    assert window.models_panel.isEnabled()  # the rest of the app is untouched
    window.tabs.setCurrentWidget(panel)
    engine.delay = 0.0
    kept = len(panel.session.trials)
    worker = panel.start(resume=True)
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    assert len(panel.session.trials) >= kept


def test_every_search_is_in_the_history(window, tmp_path, engine, qtbot):
    panel = set_up(window, tmp_path)
    run_search(qtbot, panel)
    runs = window.session.history.runs("search")
    assert runs and runs[0].status == "done" and runs[0].details["trials"] == 9
    assert {s.task for s in runs[0].scores} == {"count"}
    assert "merge_method: task_arithmetic" in runs[0].recipe
