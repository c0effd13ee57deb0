"""The Evaluate tab's tasks: task files and lm-eval names chosen, scored through the score cache,
compared in a table with deltas, grouped bars with intervals, a radar, PNG and CSV."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("pytestqt")

from eval_task_data import write_choice_task, write_generation_task  # noqa: E402
from fusion_gui.events import EvalRow  # noqa: E402
from fusion_gui.session.history import History  # noqa: E402
from fusion_gui.session.score_compare import compare  # noqa: E402
from fusion_gui.session.tabs import EvalState  # noqa: E402
from fusion_gui.ui.panels.task_chooser import TaskChooser  # noqa: E402
from fusion_gui.ui.panels.task_eval_panel import DELTA_ROW, TaskEvalPanel  # noqa: E402
from fusion_gui.ui.plots.score_bars import ScoreBars  # noqa: E402
from fusion_gui.ui.plots.score_radar import ScoreRadar  # noqa: E402
from helpers import screenshots_dir  # noqa: E402
from ui_helpers import JOB_TIMEOUT_MS, error_dialogs  # noqa: E402,F401

ROWS = (EvalRow("merge", "quiz/acc", 0.8, 100), EvalRow("base", "quiz/acc", 0.5, 100),
        EvalRow("ft", "quiz/acc", 0.6, 100), EvalRow("merge", "math/exact_match", 0.3, 50),
        EvalRow("base", "math/exact_match", 0.4, 50), EvalRow("ft", "math/exact_match", 0.2, 50),
        EvalRow("merge", "wiki/perplexity", 20.0, 900), EvalRow("base", "wiki/perplexity", 25.0, 900),
        EvalRow("ft", "wiki/perplexity", 18.0, 900), EvalRow("merge", "arc/acc_norm", 0.7, 40),
        EvalRow("base", "arc/acc_norm", 0.6, 40), EvalRow("ft", "arc/acc_norm", 0.65, 40))


def test_deltas_against_the_best_input_and_csv(tmp_path):
    c = compare(ROWS)
    assert c.delta("merge", "quiz/acc") == pytest.approx(0.2)  # against ft's 0.6
    assert c.delta("merge", "math/exact_match") == pytest.approx(-0.1)  # against base's 0.4
    assert c.delta("merge", "wiki/perplexity") == pytest.approx(2.0)  # against ft's 18 (lower is better)
    assert c.delta("base", "quiz/acc") is None
    assert c.chart_metrics() == ["quiz/acc", "math/exact_match", "arc/acc_norm"]
    low, high = c.interval("merge", "quiz/acc")
    assert low < 0.8 < high and c.interval("merge", "wiki/perplexity") is None
    with open(c.write_csv(tmp_path / "s.csv")) as f:
        lines = list(csv.DictReader(f))
    first = lines[0]
    assert first["model"] == "merge" and float(first["delta_vs_best_input"]) == pytest.approx(0.2)
    assert float(first["low"]) == pytest.approx(low)


def test_bars_and_radar_draw_every_model(qtbot, tmp_path):
    c = compare(ROWS)
    bars, radar = ScoreBars(), ScoreRadar()
    qtbot.addWidget(bars)
    qtbot.addWidget(radar)
    bars.set_comparison(c)
    assert len(bars.bars) == 3 and len(bars.error_bars) == 3
    heights = bars.bars[0].opts["height"]
    assert list(heights) == pytest.approx([0.8, 0.3, 0.7])
    assert radar.set_comparison(c) and set(radar.polygons) == {"merge", "base", "ft"}
    xs, ys = radar.polygons["merge"].getData()
    assert ys[0] == pytest.approx(0.8)  # the first spoke points up, its length the score
    two = compare(tuple(r for r in ROWS if r.metric in ("quiz/acc", "math/exact_match")))
    assert not radar.set_comparison(two) and radar.isHidden()


def test_chooser_names_a_bad_line_and_adds_nothing(qtbot, tmp_path, error_dialogs):  # noqa: F811
    state = EvalState()
    chooser = TaskChooser(state)
    qtbot.addWidget(chooser)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "choices": ["a", "b"], "answer": 0}\nnot json\n')
    assert not chooser.add(str(bad))
    assert state.task_specs == () and "line 2" in error_dialogs[-1][0]
    good = write_generation_task(tmp_path / "gen.jsonl", [("2+2=", "4")])
    assert chooser.add(str(good)) and chooser.add_lm_eval("arc_easy")
    assert state.task_specs == (str(good), "lm-eval:arc_easy") and chooser.list.count() == 2
    text = tmp_path / "wiki.txt"
    text.write_text("Some plain text to score perplexity on.\n")
    assert chooser.add(str(text))  # a text file: perplexity
    tasks = chooser.tasks()
    assert tasks[0].kind == "generation" and tasks[2].kind == "perplexity" and tasks[1].name == "arc_easy"
    chooser.chat_box.setChecked(True)
    assert state.chat_template and chooser.settings().chat_template


def test_panel_evaluates_then_answers_from_the_cache(qtbot, llama_family, tmp_path):
    state = EvalState()
    state.set_models([llama_family[1], llama_family[0], llama_family[2]])
    history = History(tmp_path / "h.sqlite")
    panel = TaskEvalPanel(state, history)
    qtbot.addWidget(panel)
    assert panel.body.isHidden()  # folded until a task is chosen
    for name in ("a", "b", "c"):
        assert panel.chooser.add(str(write_choice_task(tmp_path / f"{name}.jsonl", n=6, seed=ord(name))))
    assert not panel.body.isHidden() and panel.toggle.isChecked()
    with qtbot.waitSignal(panel.evaluated, timeout=JOB_TIMEOUT_MS):
        panel.start()
    models = panel.comparison.models
    assert len(models) == 3 and panel.table.rowCount() == 4
    assert panel.table.verticalHeaderItem(3).text() == DELTA_ROW
    assert "cached" not in panel.status_label.text()
    assert len(panel.bars.bars) == 3 and panel.radar.isVisibleTo(panel)
    first = panel.cell_text(0, 0)
    panel.resize(1000, 600)
    panel.save_png(str(screenshots_dir() / "task_eval_charts.png"))
    panel.save_csv(str(tmp_path / "scores.csv"))
    assert (tmp_path / "scores.csv").read_text().startswith("model,score,value")
    with qtbot.waitSignal(panel.evaluated, timeout=JOB_TIMEOUT_MS):
        panel.start()
    assert "3 cached" in panel.status_label.text()
    assert panel.cell_text(0, 0) == first and "(cached)" in panel.table.verticalHeaderItem(0).text()
    assert [r.kind for r in history.runs()] == ["eval", "eval"]
    history.close()
