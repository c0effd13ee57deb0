"""What a newcomer meets on the Inspect and Search tabs after the Merge tab's demo: the Inspect views start
from the Merge view's models (and take them again on demand), a start that cannot run is disabled and says
why in the view (no modal dialog), empty plots say what will appear instead of showing meaningless axes,
the second search objective never repeats the first, and Resume waits for budget left."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from fusion_gui.session.search_trials import TrialRow  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    close_questions, config_dir, error_dialogs, no_leaked_windows, save_screenshot, window,
)

pytestmark = pytest.mark.gui


def merge_view_with(window, refs):
    window.document.set_method("ties")
    window.document.add_models(list(refs))  # the first becomes the base, as the demo's does


def test_inspect_views_start_from_the_merge_views_models(window, qtbot, llama_family):
    base, ft1, ft2 = map(str, llama_family)
    merge_view_with(window, [base, ft1, ft2])
    state = window.session.inspect
    assert state.models == [] and state.base == ""
    window.tabs.setCurrentWidget(window.inspect_panel)
    panel = window.inspect_panel.similarity
    assert state.base == base and state.models == [ft1, ft2]
    assert panel.models.refs() == [ft1, ft2] and panel.base.text() == base
    assert (state.depth_a, state.depth_b) == (base, ft1)
    assert window.inspect_panel.depth.model_b.text() == ft1
    assert state.spectral_models == [base, ft1, ft2]
    assert panel.start_button.isEnabled()
    window.resize(1280, 800)
    qtbot.wait(50)
    save_screenshot(window, "newcomer-inspect-similarity.png")

    state.remove_model(ft2)  # the user's choice stays when the tab is shown again
    window.tabs.setCurrentIndex(0)
    window.tabs.setCurrentWidget(window.inspect_panel)
    assert state.models == [ft1]
    panel.from_merge_button.click()  # on demand: the Merge view's models again
    assert state.models == [ft1, ft2] and state.base == base
    state.choose_depth_models("", "")
    window.inspect_panel.depth.from_merge_button.click()
    assert (state.depth_a, state.depth_b) == (base, ft1)
    state.set_spectral_models([])
    window.inspect_panel.spectral.from_merge_button.click()
    assert state.spectral_models == [base, ft1, ft2]


def test_a_start_that_cannot_run_is_disabled_and_says_why_inline(window, qtbot, error_dialogs):
    window.tabs.setCurrentWidget(window.inspect_panel)  # the Merge view is empty: nothing to take
    panel, state = window.inspect_panel.similarity, window.session.inspect
    assert not panel.start_button.isEnabled() and "base" in panel.start_button.toolTip()
    assert panel.start() is None and error_dialogs == []
    assert panel.status_label.text() == state.problem()
    state.set_base("b")
    state.add_model("ft1")
    assert not panel.start_button.isEnabled() and "two models" in panel.start_button.toolTip()
    assert not panel.merge_button.isEnabled()
    state.add_model("ft2")
    assert panel.start_button.isEnabled() and panel.merge_button.isEnabled()
    panel.from_merge_button.click()  # an empty Merge view: a sentence, the choices stay
    assert state.models == ["ft1", "ft2"] and "no models" in panel.status_label.text()

    depth, spectral = window.inspect_panel.depth, window.inspect_panel.spectral
    assert not depth.start_button.isEnabled() and not spectral.start_button.isEnabled()
    assert depth.start() is None and spectral.start() is None and error_dialogs == []
    assert "two models" in depth.status_label.text() and "one model" in spectral.status_label.text()
    state.choose_depth_models("a", "b")
    state.set_spectral_models(["a"])
    assert depth.start_button.isEnabled() and spectral.start_button.isEnabled()


def test_empty_plots_say_what_will_appear_without_axes(qtbot):
    from fusion_gui.engine.inspect.spectral import SpectralTensor
    from fusion_gui.events import DepthMatch
    from fusion_gui.ui.plots.alpha_plot import AlphaPlot
    from fusion_gui.ui.plots.depth_plot import DepthMapPlot
    from fusion_gui.ui.plots.similarity_plots import DendrogramPlot, MatrixPlot

    matrix = MatrixPlot("Cosine", "CET-D1", diverging=True, empty_text="The cosine appears here.")
    dendrogram, depth, alpha = DendrogramPlot(), DepthMapPlot(), AlphaPlot()
    plots = (matrix, dendrogram, depth, alpha)
    for plot in plots:
        qtbot.addWidget(plot)
        plot.resize(400, 300)
        plot.show()
    qtbot.waitExposed(alpha)

    def axes_shown(plot):
        return [plot.getPlotItem().getAxis(side).isVisible() for side in ("bottom", "left")]

    for plot in plots:
        assert plot.empty.label.isVisible() and plot.empty.label.text()
        assert axes_shown(plot) == [False, False]
    assert matrix.empty.label.text() == "The cosine appears here." and not matrix._bar.isVisible()

    matrix.set_matrix(np.eye(2), ["a", "b"])
    dendrogram.set_linkage(np.array([[0.0, 1.0, 0.2, 2.0], [2.0, 3.0, 0.5, 3.0]]), ["a", "b", "c"])
    depth.show_match(DepthMatch(model_a="a", model_b="b", layers_a=2, layers_b=1, mapping=(0, 0),
                                cosine=np.array([0.5, 0.7]), relative_diff=np.array([0.1, 0.2])))
    alpha.add_fit(SpectralTensor(model="a", name="w", layer=0, kind="mlp.up", shape=(8, 8), alpha=3.0,
                                 ks_distance=0.1, evals=30))
    alpha.flush()
    for plot in plots:
        assert not plot.empty.label.isVisible() and axes_shown(plot) == [True, True]
    assert matrix._bar.isVisible()

    dendrogram.set_linkage(None, ["a", "b"], "Two fine-tunes: nothing to cluster.")
    matrix.clear_matrix()
    alpha.reset()
    assert dendrogram.empty.label.text() == "Two fine-tunes: nothing to cluster."
    for plot in (dendrogram, matrix, alpha):
        assert plot.empty.label.isVisible() and axes_shown(plot) == [False, False]


def test_the_second_objective_never_repeats_the_first(window):
    form = window.search_panel.form
    window.tabs.setCurrentWidget(window.search_panel)
    form.fill_objectives()

    def texts(combo):
        return [combo.itemText(i) for i in range(combo.count())]

    form.objective_1.setCurrentText("count")
    assert "count" not in texts(form.objective_2) and "reverse" in texts(form.objective_2)
    form.objective_2.setCurrentText("reverse")
    assert window.session.search.objectives == ["count", "reverse"]
    form.objective_1.setCurrentText("reverse")  # the first becomes the second: the second resets to none
    assert form.objective_2.currentIndex() == 0 and "reverse" not in texts(form.objective_2)
    assert window.session.search.objectives == ["reverse"]


def test_resume_waits_for_budget_left(window, tmp_path):
    panel, session = window.search_panel, window.session.search
    panel.form.output_row.setText(str(tmp_path / "search"))
    panel.form.trials.setValue(2)
    session.add_trials([TrialRow(0, scores=(1.0,)), TrialRow(1, scores=(2.0,))])  # the budget is spent
    window.tabs.setCurrentWidget(panel)
    assert not panel.resume_button.isEnabled() and "raise" in panel.resume_button.toolTip()
    panel.form.trials.setValue(3)  # the user raised it: one more trial can run
    assert panel.resume_button.isEnabled()
    panel.form.trials.setValue(0)  # no trial budget (time only): the study can go on
    assert panel.resume_button.isEnabled()
