"""The inspection views: a click on a heatmap cell or a layer point opens the tensor's drill-down (a job,
cached on reopening, PNG and CSV), the Inspect tab's many-models similarity with "Merge these", the
relative-depth mapping and the spectral health curves; and the Qt-free InspectState behind them."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from fusion_gui.engine.inspect import tensor as tensor_mod  # noqa: E402
from fusion_gui.events import TensorMetrics  # noqa: E402
from fusion_gui.session import MergeSession  # noqa: E402
from fusion_gui.session.inspect import (  # noqa: E402
    DEFAULT_DENSITY, InspectState, request_from_compare, request_from_merge,
)
from fusion_gui.session.tabs import CompareState  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, close_questions, config_dir, error_dialogs, no_leaked_windows, save_screenshot, window,
)

pytestmark = pytest.mark.gui
W = "model.layers.1.mlp.up_proj.weight"


def wait_done(qtbot, worker):
    assert worker is not None
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass


# ---- the Qt-free state ------------------------------------------------------------------------

def test_inspect_state_intents_and_requests():
    state = InspectState()
    seen = []
    state.events.models.connect(seen.append)
    state.set_models(["a", "b", "a", " "])
    state.set_base("a")  # the base leaves the compared models
    assert state.models == ["b"] and state.base == "a" and seen[-1] == ["b"]
    assert "two models" in state.problem()
    state.add_model("c")
    assert state.problem() == ""

    merge = MergeSession()
    merge.set_method("ties")
    assert request_from_merge(merge.state, W) is None  # nothing to measure from yet
    merge.add_models(["base", "ft1", "ft2"])
    merge.set_global("density", 0.3)
    req = request_from_merge(merge.state, W)
    assert (req.base, req.models, req.density) == ("base", ("ft1", "ft2"), 0.3)
    merge.set_global("density", [0.2, 0.8])  # a gradient: the preview uses the default
    assert request_from_merge(merge.state, W).density == DEFAULT_DENSITY

    compare = CompareState()
    compare.choose("a", "b")
    assert request_from_compare(compare, W).models == ("b",) and request_from_compare(compare, W).base == "a"
    compare.choose("a", "b", "base")
    assert request_from_compare(compare, W, 0.7) == request_from_compare(compare, W, 0.7)
    assert request_from_compare(compare, W).models == ("a", "b")


def test_merge_these_fills_the_merge_session():
    merge = MergeSession()
    merge.set_method("ties")
    merge.add_models(["old-base", "old-ft"])
    state = InspectState(models=["ft1", "ft2"], base="base")
    state.merge_these(merge)
    assert merge.state.base_model == "base" and set(merge.state.model_refs()) == {"base", "ft1", "ft2"}
    assert merge.state.method == "ties"  # its method and settings stay
    merge.set_method("passthrough")  # takes no base: the fine-tunes only, and a note
    notes = []
    merge.message.connect(notes.append)
    state.merge_these(merge)
    assert "base" not in merge.state.model_refs() and any("takes no base" in n for n in notes)


# ---- drill-down -------------------------------------------------------------------------------

def _metrics(name, layer, kind):
    return TensorMetrics(name=name, layer=layer, kind=kind, numel=10, models=("ft1", "ft2"),
                         input_change=np.array([0.1, 0.2]), result_change=0.1)


def test_clicks_on_the_plots_name_the_tensors(qtbot):
    from fusion_gui.ui.panels.plot_tabs import PlotTabs

    plots = PlotTabs(show_result=True)
    qtbot.addWidget(plots)
    for name, kind in ((W, "mlp.up"), ("model.layers.1.mlp.down_proj.weight", "mlp.down")):
        plots.handle_event(_metrics(name, 1, kind))
    plots.flush()
    with qtbot.waitSignal(plots.tensors_clicked) as cell:
        plots.heatmap.click_cell(1, "mlp.up")
    assert cell.args == [[W]]
    with qtbot.waitSignal(plots.tensors_clicked) as layer:
        plots.layer_plot.layer_clicked.emit(1)
    assert set(layer.args[0]) == {W, "model.layers.1.mlp.down_proj.weight"}


@pytest.mark.screenshot
def test_drill_down_from_the_merge_heatmap(window, qtbot, llama_family, error_dialogs, tmp_path):
    from fusion_gui.ui.dialogs.drill_down_dialog import open_drill_down

    tensor_mod.clear_cache()
    base, ft1, ft2 = map(str, llama_family)
    window.document.set_method("ties")
    window.models_panel.add_models([base, ft1, ft2])
    window.document.set_global("density", 0.4)
    window.merge_plots.handle_event(_metrics(W, 1, "mlp.up"))
    window.merge_plots.flush()
    window.merge_plots.heatmap.click_cell(1, "mlp.up")
    dialog = window._drill_down_dialog
    wait_done(qtbot, dialog.runner.worker)
    assert error_dialogs == []
    result = dialog.result
    assert result.name == W and result.density == 0.4 and result.models == ("llama-ft1", "llama-ft2")
    assert not result.cached
    qtbot.waitUntil(lambda: not dialog.plots.pending)  # built and drawn a plot per event-loop turn
    assert dialog.plots.table.rowCount() == 2 and dialog.plots.model_box.count() == 2
    c = result.changes[0]
    assert dialog.plots.rank_line_positions() == [c.rank_90, c.rank_99]
    dialog.plots.model_box.setCurrentIndex(1)  # the image follows the chosen model
    np.testing.assert_array_equal(dialog.plots._image.image, result.changes[1].image)
    dialog.resize(1280, 800)
    qtbot.wait(50)
    save_screenshot(dialog, "drill-down.png")
    dialog.save_png(tmp_path / "d.png")
    dialog.save_csv(tmp_path / "d.csv")
    assert (tmp_path / "d.png").stat().st_size > 0
    rows = list(csv.reader(open(tmp_path / "d.csv")))
    counts = [r for r in rows if r[1] == "llama-ft1" and r[2].startswith("histogram_count")]
    assert sum(int(r[4]) for r in counts) == int(np.prod(result.shape))
    # reopened: from the engine's cache, still through a job
    again = open_drill_down(window, [W], dialog.request_for)
    wait_done(qtbot, again.runner.worker)
    assert again is dialog and dialog.result.cached
    dialog.close()


def _fake_drill_down(models=("a", "b")):
    from fusion_gui.events import ModelChange, TensorDrillDown

    g = np.random.default_rng(0)
    changes = tuple(ModelChange(
        model=m, relative_change=0.1, counts=np.ones(8), log_counts=np.log10(2 * np.ones(8)),
        image=g.random((6, 5), dtype=np.float32), row_norms=np.ones(6, np.float32),
        col_norms=np.ones(5, np.float32), spectrum=np.array([3.0, 2.0, 1.0]), effective_rank=2.5, rank_90=2,
        rank_99=3, masks={"ties": g.random((6, 5), dtype=np.float32)}, kept={"ties": 0.5}) for m in models)
    return TensorDrillDown(name=W, shape=(12, 10), base_model="base", models=tuple(models),
                           bin_edges=np.linspace(-1, 1, 9), changes=changes, svd="exact", density=0.5,
                           sign_agreement=0.9, block=(2, 2))


def test_drill_down_plots_are_built_after_the_constructor_and_a_result_given_meanwhile_is_drawn(qtbot):
    import pyqtgraph as pg

    from fusion_gui.ui.plots.drill_down_plots import DrillDownPlots

    plots = DrillDownPlots()
    qtbot.addWidget(plots)
    # the constructor makes no pyqtgraph view (tens of ms each): they come one per event-loop turn
    assert plots.findChildren(pg.GraphicsView) == [] and plots.pending
    result = _fake_drill_down()
    plots.show_result(result)  # before the plots exist: drawn once they do
    qtbot.waitUntil(lambda: not plots.pending)
    assert len(plots.findChildren(pg.GraphicsView)) == 4
    assert plots.table.rowCount() == 2 and plots.rank_line_positions() == [2, 3]
    np.testing.assert_array_equal(plots._image.image, result.changes[0].image)
    plots.clear()
    assert plots._image.image is None and plots.rank_line_positions() == [None, None]


def test_drill_down_from_compare_without_a_base(window, qtbot, llama_family, error_dialogs):
    _, ft1, ft2 = map(str, llama_family)
    window.compare_panel.set_models(ft1, ft2)
    window.compare_panel.plots.handle_event(_metrics(W, 1, "mlp.up"))
    window.compare_panel.plots.flush()
    window.compare_panel.plots.heatmap.click_cell(1, "mlp.up")
    dialog = window._drill_down_dialog
    wait_done(qtbot, dialog.runner.worker)
    assert error_dialogs == [] and dialog.result.base_model == "llama-ft1"
    assert dialog.result.models == ("llama-ft2",) and dialog.result.sign_agreement is None
    dialog.close()


# ---- the Inspect tab --------------------------------------------------------------------------

@pytest.mark.screenshot
def test_similarity_of_many_models_and_merge_these(window, qtbot, llama_family, error_dialogs, tmp_path):
    base, ft1, ft2 = map(str, llama_family)
    window.tabs.setCurrentWidget(window.inspect_panel)
    panel = window.inspect_panel.similarity
    state = window.session.inspect
    state.set_base(base)
    for ref in (ft1, ft2, ft1 + "/"):  # the same model twice (another spelling): cosine 1
        state.add_model(ref)
    assert panel.models.refs() == [ft1, ft2, ft1 + "/"]
    wait_done(qtbot, panel.start())
    assert error_dialogs == []
    result = panel.result
    np.testing.assert_allclose(panel.cosine_plot.matrix, result.whole.cosine)
    assert result.whole.cosine[0, 2] == pytest.approx(1.0)
    assert len(panel.dendrogram.leaves) == 3
    state.choose_group("layer 2")
    layer2 = next(g for g in result.groups if g.group == "layer 2")
    np.testing.assert_allclose(panel.conflict_plot.matrix, layer2.sign_conflict)
    window.resize(1280, 800)
    qtbot.wait(50)
    save_screenshot(window, "inspect-similarity.png")
    panel.save_csv(tmp_path / "s.csv")
    assert len(list(csv.reader(open(tmp_path / "s.csv")))) == 1 + 9 * (1 + len(result.groups))
    state.remove_model(ft1 + "/")
    panel.merge_these()
    assert window.tabs.currentIndex() == 0
    assert window.document.state.base_model == base and set(window.document.state.model_refs()) == {base, ft1, ft2}


@pytest.mark.screenshot
def test_depth_mapping_view(window, qtbot, llama_family, tmp_path, error_dialogs):
    from fusion_gui.engine.synthetic_models import build_family

    [shallow] = build_family(tmp_path, "llama", n_finetunes=0, layers=2)
    panel = window.inspect_panel.depth
    window.tabs.setCurrentWidget(window.inspect_panel)
    window.inspect_panel.setCurrentWidget(panel)
    window.session.inspect.choose_depth_models(str(llama_family[0]), str(shallow))
    assert panel.model_b.text() == str(shallow)
    wait_done(qtbot, panel.start())
    assert error_dialogs == []
    assert panel.plot.lines == [(0, 0), (1, 0), (2, 1), (3, 1)]
    assert [panel.table.item(i, 1).text() for i in range(4)] == ["0", "0", "1", "1"]
    window.resize(1280, 800)
    qtbot.wait(50)
    save_screenshot(window, "inspect-depth.png")


@pytest.mark.screenshot
def test_spectral_health_curves(window, qtbot, llama_family, error_dialogs):
    base, ft1, _ = map(str, llama_family)
    panel = window.inspect_panel.spectral
    window.tabs.setCurrentWidget(window.inspect_panel)
    window.inspect_panel.setCurrentWidget(panel)
    window.session.inspect.set_spectral_models([base, ft1])
    wait_done(qtbot, panel.start())
    assert error_dialogs == []
    panel.plot.flush()
    for model in panel.result.models:
        expected = panel.result.layer_alphas(model)
        assert panel.plot.layer_means(model) == pytest.approx(expected) and len(expected) == 4
    window.resize(1280, 800)
    qtbot.wait(50)
    save_screenshot(window, "inspect-spectral.png")
