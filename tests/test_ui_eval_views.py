"""The Evaluate view: completions side by side for every model, and no scores of other models left standing."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("pytestqt")

from fusion_gui.engine.evaluate.demo import build_demo  # noqa: E402
from fusion_gui.engine.evaluate.scoring import evaluate  # noqa: E402
from fusion_gui.events import EvalRow, Generation  # noqa: E402
from fusion_gui.ui.panels.eval_panel import EvalPanel  # noqa: E402
from helpers import drain  # noqa: E402
from test_demo_eval import SMALL  # noqa: E402

TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def four_models(tmp_path_factory):
    """base, count, reverse of a small demo build, plus a copy of count under another name."""
    root = tmp_path_factory.mktemp("small-demo")
    demo, _ = drain(build_demo(root / "demo", SMALL))
    copy = root / "count-copy"
    shutil.copytree(demo.count, copy)
    return [str(p) for p in demo.paths] + [str(copy)]


def test_the_engine_completes_the_prompt_with_every_model(four_models):
    result, events = drain(evaluate(four_models, prompt="abc<"))
    assert sorted({g.model for g in result.generations}) == sorted(["base", "count", "reverse", "count-copy"])
    assert [e for e in events if isinstance(e, Generation)] == list(result.generations)


def run_panel(qtbot, panel):
    with qtbot.waitSignal(panel.evaluated, timeout=TIMEOUT_MS) as blocker:
        assert panel.start() is not None
    qtbot.waitUntil(panel.run_button.isEnabled, timeout=TIMEOUT_MS)
    return blocker.args[0]


def test_four_models_get_four_readable_columns_beside_each_other(qtbot, four_models):
    panel = EvalPanel()
    qtbot.addWidget(panel)
    panel.resize(1280, 680)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_models(four_models)
    for box in panel.task_boxes.values():
        box.setChecked(False)
    panel.task_boxes["count"].setChecked(True)
    panel.prompt_edit.setText("abc<")
    run_panel(qtbot, panel)
    qtbot.wait(20)  # the layout settles
    columns = list(panel.generations.columns.values())
    assert [c.model for c in columns] == ["base", "count", "reverse", "count-copy"]
    for column in columns:
        assert "greedy:\nabc<" in column.text.toPlainText() and "sampled:\nabc<" in column.text.toPlainText()
    tops = {c.geometry().top() for c in columns}
    lefts = [c.geometry().left() for c in columns]
    assert len(tops) == 1 and lefts == sorted(lefts)  # one row, left to right
    assert all(c.width() >= 250 and c.text.height() >= 150 for c in columns)  # readable, not a sliver
    assert panel.table.height() < panel.generations.height()  # the table is as tall as its rows, no more
    assert "Evaluated 4 model(s)" in panel.status_label.text()


def test_scores_of_an_earlier_model_list_are_cleared(qtbot, four_models):
    panel = EvalPanel()
    qtbot.addWidget(panel)
    panel.set_models(four_models[:2])
    for box in panel.task_boxes.values():
        box.setChecked(False)
    panel.task_boxes["count"].setChecked(True)
    panel.prompt_edit.setText("ab<")
    run_panel(qtbot, panel)
    assert panel.table.rowCount() == 2 and panel.generations.columns and panel.save_button.isEnabled()
    panel.state.add_model(four_models[2])
    assert panel.table.rowCount() == 0 and not panel.rows and not panel.generations.columns
    assert not panel.save_button.isEnabled() and "press Evaluate" in panel.status_label.text()
    panel.state.models = list(panel.state.models)  # the same list: nothing to clear, nothing said
    run_panel(qtbot, panel)
    assert [r.model for r in panel.rows if isinstance(r, EvalRow)] == ["base", "count", "reverse"]
