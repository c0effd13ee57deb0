"""The smoke verdict widget, in the Run panel and the Distill view."""

from __future__ import annotations

from ui_helpers import config_dir  # noqa: F401

from fusion_gui.events import SmokeCheck, SmokeVerdict
from fusion_gui.ui.jobs import dispatch
from fusion_gui.ui.widgets.verdict import COLOURS, VerdictView

BROKEN = SmokeVerdict("broken", ("Token id 300 is past the 256 embedding rows.",),
                      (SmokeCheck("token ids", "broken", "Token id 300 is past the 256 embedding rows."),))


def test_verdict_hidden_until_a_verdict_then_coloured_with_reasons(qtbot):
    view = VerdictView()
    qtbot.addWidget(view)
    assert view.isHidden()
    assert view.show_verdict(BROKEN).startswith("Smoke check: broken")
    text = view.label.text()
    assert not view.isHidden() and COLOURS["broken"] in text and "past the 256 embedding rows" in text
    assert "token ids: broken" in view.label.toolTip()
    view.clear()
    assert view.isHidden() and view.verdict is None


def test_ok_verdict_is_quiet(qtbot):
    view = VerdictView()
    qtbot.addWidget(view)
    assert view.show_verdict(SmokeVerdict("ok", (), perplexity=12.5)) is None  # nothing for the status line
    text = view.label.text()
    assert COLOURS["ok"] in text and "bold" not in text and "12.5" in text and "<li" not in text


def test_handlers_route_smoke_events(qtbot):
    view = VerdictView()
    qtbot.addWidget(view)
    handlers = view.handlers()
    dispatch(handlers, SmokeCheck("config", "ok", "fine"))(SmokeCheck("config", "ok", "fine"))
    assert len(view.checks) == 1 and "1 check" in view.label.text()
    dispatch(handlers, BROKEN)(BROKEN)
    assert view.verdict is BROKEN


def test_run_panel_and_distill_view_show_result_smoke(qtbot, config_dir, tmp_path):  # noqa: F811
    from fusion_gui.events import DistillResult, MergeResult
    from fusion_gui.session import MergeSession
    from fusion_gui.ui.panels.distill_panel import DistillPanel
    from fusion_gui.ui.panels.run_panel import RunPanel
    from fusion_gui.ui.settings import AppSettings

    run = RunPanel(MergeSession(), AppSettings())
    qtbot.addWidget(run)
    suspicious = SmokeVerdict("suspicious", ("4 of 4 greedy completions repeat one token.",))
    run._on_finished(MergeResult(str(tmp_path / "out"), 3, 10, 1, 0.5, 1 << 20, (), suspicious))
    assert run.verdict_view.verdict is suspicious and "repeat one token" in run.verdict_view.label.text()

    distill = DistillPanel()
    qtbot.addWidget(distill)
    import dataclasses
    fields = {f.name: None for f in dataclasses.fields(DistillResult)}
    fields.update(out_dir=str(tmp_path / "student"), steps=1, seconds=1.0, final_eval={}, smoke=BROKEN)
    distill._on_finished(DistillResult(**fields))
    assert distill.verdict_view.verdict is BROKEN and not distill.verdict_view.isHidden()
