"""The Compare tab: the engine's diff on the worker, the same plots, nothing written."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, close_questions, config_dir, error_dialogs, no_leaked_windows, save_screenshot, window,
)

pytestmark = pytest.mark.gui
LAYERS = 4


def run_compare(qtbot, panel):
    worker = panel.start_compare()
    assert worker is not None
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    return worker


@pytest.mark.screenshot
def test_compare_two_finetunes_against_their_base(window, qtbot, llama_family, error_dialogs):
    base, ft1, ft2 = map(str, llama_family)
    before = sorted(p.name for p in llama_family[0].parent.iterdir())
    window.models_panel.add_models([base, ft1, ft2])
    window.tabs.setCurrentWidget(window.compare_panel)
    panel = window.compare_panel
    assert panel.model_a.combo.count() == 3  # the Merge tab's models are offered
    panel.set_models(ft1, ft2, base)
    run_compare(qtbot, panel)
    assert error_dialogs == []
    result = panel.last_result
    assert result is not None and result.base_model == "llama-base"
    panel.plots.flush()
    counts = panel.plots.layer_plot.point_counts()
    assert counts == {"llama-ft1": LAYERS, "llama-ft2": LAYERS}
    assert sorted(p.name for p in llama_family[0].parent.iterdir()) == before  # nothing written
    panel.plots.heatmap.set_metric("relative change")
    panel.plots.flush()
    save_screenshot(window, "compare.png")


def test_compare_without_a_base_measures_b_against_a(window, qtbot, llama_family, error_dialogs):
    _, ft1, ft2 = map(str, llama_family)
    panel = window.compare_panel
    panel.set_models(ft1, ft2)
    run_compare(qtbot, panel)
    assert error_dialogs == []
    panel.plots.flush()
    assert panel.plots.layer_plot.point_counts() == {"llama-ft2": LAYERS}


def test_compare_models_of_different_shapes_shows_the_error(window, qtbot, llama_family, gpt2_family,
                                                           error_dialogs):
    panel = window.compare_panel
    panel.set_models(str(llama_family[1]), str(gpt2_family[1]))
    run_compare(qtbot, panel)
    assert len(error_dialogs) == 1 and not error_dialogs[0][0].startswith("Unexpected")
    assert panel.compare_button.isEnabled()
