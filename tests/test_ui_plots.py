"""Live plot widgets, fed synthetic metrics with known numbers (offscreen Qt)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")
from PySide6.QtCore import QPointF  # noqa: E402

from fusion_gui.events import LayerMetrics, TensorMetrics  # noqa: E402
from fusion_gui.ui.plots import LayerChangePlot, MetricHeatmap  # noqa: E402
from fusion_gui.ui.plots.heatmap import KINDS  # noqa: E402
from helpers import screenshots_dir  # noqa: E402

pytestmark = pytest.mark.gui
MODELS = ("ft-a", "ft-b")


def layer_ev(layer, a, b, result, **kw) -> LayerMetrics:
    return LayerMetrics(layer, MODELS, np.array([a, b]), result, tensors=9, **kw)


def tensor_ev(name, layer, kind, numel, a, b, result, **kw) -> TensorMetrics:
    return TensorMetrics(name, layer, kind, numel, MODELS, np.array([a, b]), result, **kw)


@pytest.fixture
def plot(qtbot):
    w = LayerChangePlot()
    qtbot.addWidget(w)
    w.resize(800, 500)
    w.reset(MODELS)
    return w


@pytest.fixture
def heat(qtbot):
    w = MetricHeatmap()
    qtbot.addWidget(w)
    w.resize(900, 500)
    w.reset()
    return w


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


# ---- LayerChangePlot ----------------------------------------------------------------------

def test_layer_plot_curves_hold_what_was_sent(plot):
    sent = {k: (0.01 * k, 0.02 * k, 0.015 * k) for k in range(5)}
    for k in (3, 0, 4, 1, 2):  # arrival order does not matter; x is sorted
        plot.add_layer(layer_ev(k, *sent[k]))
    plot.add_layer(layer_ev(None, 0.5, 0.6, 0.55))  # outside layers: not on the layer axis
    plot.flush()
    assert plot.point_counts() == {"ft-a": 5, "ft-b": 5, "result": 5}
    for i, name in enumerate((*MODELS, "result")):
        x, y = plot.curve_data(name)
        np.testing.assert_array_equal(x, np.arange(5))
        np.testing.assert_allclose(y, [sent[k][i] for k in range(5)])


def test_layer_plot_shows_every_layer_from_the_start(plot, qtbot):
    plot.set_layer_count(24)  # the merge's plan says how many layers there will be
    plot.add_layer(layer_ev(0, 0.01, 0.02, 0.015))
    plot.add_layer(layer_ev(1, 0.01, 0.02, 0.015))
    plot.flush()
    (x0, x1), _ = plot._plot.vb.viewRange()
    assert x0 <= 0 and x1 >= 23  # not just the two layers that have arrived
    plot.reset(MODELS)  # a new job: the axis follows the data again
    plot.add_layer(layer_ev(0, 0.01, 0.02, 0.015))
    plot.add_layer(layer_ev(1, 0.01, 0.02, 0.015))
    plot.flush()
    plot.show()
    qtbot.wait(50)  # pyqtgraph recomputes an auto range when it next updates the view
    (x0, x1), _ = plot._plot.vb.viewRange()
    assert x1 < 5


def test_layer_plot_redraw_is_throttled_not_immediate(plot, qtbot):
    plot.add_layer(layer_ev(0, 0.1, 0.2, 0.15))
    plot.add_layer(layer_ev(1, 0.1, 0.2, 0.15))
    qtbot.waitUntil(lambda: len(plot.curve_data("ft-a")[1]) == 2, timeout=10_000)


def test_layer_plot_hide_result_and_missing_values(plot):
    plot.add_layer(layer_ev(0, 0.1, float("nan"), 0.15))
    plot.add_layer(layer_ev(1, 0.1, 0.2, 0.15))
    plot.set_show_result(False)
    plot.flush()
    assert plot.point_counts() == {"ft-a": 2, "ft-b": 1}
    assert "merge result" not in plot.readout_text()
    plot.set_show_result(True)
    assert plot.point_counts()["result"] == 2


def test_layer_plot_reset_clears(plot):
    plot.add_layer(layer_ev(0, 0.1, 0.2, 0.15))
    plot.reset(("x",))
    plot.flush()
    assert plot.point_counts() == {"x": 0, "result": 0}


def test_layer_plot_hover_shows_exact_values(plot, qtbot):
    plot.show()
    qtbot.waitExposed(plot)
    for k in range(4):
        plot.add_layer(layer_ev(k, 0.0123456 * (k + 1), 0.02, 0.03, cosine=0.25))
    plot.flush()
    plot.hover_layer(2.2)
    text = plot.readout_text()
    assert "layer 2" in text and "0.037037" in text and "cos 0.25" in text


def test_layer_plot_csv_and_png(plot, tmp_path):
    plot.add_layer(layer_ev(0, 0.1, 0.2, 0.15, sign_conflict=0.3, kept_fraction=0.2))
    plot.add_layer(layer_ev(1, 0.11, 0.21, 0.16))
    plot.add_layer(layer_ev(None, 0.5, 0.6, 0.55))
    plot.save_csv(tmp_path / "p.csv")
    rows = read_csv(tmp_path / "p.csv")
    assert [r["layer"] for r in rows] == ["0", "1", ""]
    assert float(rows[1]["change[ft-b]"]) == 0.21 and float(rows[2]["result_change"]) == 0.55
    assert float(rows[0]["sign_conflict"]) == 0.3 and rows[1]["sign_conflict"] == ""
    plot.save_png(tmp_path / "p.png")
    assert_png(tmp_path / "p.png")


# ---- MetricHeatmap ------------------------------------------------------------------------

def test_heatmap_cells_are_numel_weighted_means(heat):
    evs = [
        tensor_ev("l0.in_norm", 0, "norm", 100, 0.1, 0.3, 0.2, sign_conflict=0.5),
        tensor_ev("l0.post_norm", 0, "norm", 300, 0.2, 0.4, 0.1, sign_conflict=None),
        tensor_ev("l0.q", 0, "attn.q", 1000, 0.05, 0.07, 0.06, sign_conflict=0.25),
        tensor_ev("l1.weird", 1, "rotary", 10, 0.5, 0.5, 0.5),  # unknown kind -> other
        tensor_ev("embed", None, "embed", 5000, 0.01, 0.03, 0.02),
    ]
    for ev in evs:
        heat.add_tensor(ev)
    heat.flush()
    assert heat.cell_value(0, "norm") == pytest.approx((100 * 0.2 + 300 * 0.3) / 400)
    heat.set_model("ft-b")
    assert heat.cell_value(0, "norm") == pytest.approx((100 * 0.3 + 300 * 0.4) / 400)
    heat.set_metric("result change")
    assert heat.cell_value(0, "norm") == pytest.approx((100 * 0.2 + 300 * 0.1) / 400)
    heat.set_metric("sign-conflict rate")  # only tensors that report it count
    assert heat.cell_value(0, "norm") == pytest.approx(0.5)
    assert heat.cell_value(0, "attn.q") == pytest.approx(0.25)
    heat.set_metric("relative change")
    heat.set_model(None)
    assert heat.cell_value(1, "other") == pytest.approx(0.5)
    assert heat.cell_value(1, "rotary") == pytest.approx(0.5)
    assert heat.cell_value(None, "embed") == pytest.approx(0.02)
    assert heat.cell_value(1, "attn.q") is None
    img = heat.image_data()  # columns: outside-layers, layer 0, layer 1
    assert img.shape == (len(KINDS), 3)
    assert img[KINDS.index("embed"), 0] == pytest.approx(0.02)
    assert img[KINDS.index("norm"), 1] == pytest.approx(heat.cell_value(0, "norm"))
    assert math.isnan(img[KINDS.index("attn.q"), 2])


def test_heatmap_metric_switch_changes_image_and_colour_scale(heat):
    heat.add_tensor(tensor_ev("l0.q", 0, "attn.q", 10, 0.03, 0.03, 0.02, cosine=-0.5))
    heat.add_tensor(tensor_ev("l0.k", 0, "attn.k", 10, 0.01, 0.01, 0.02, cosine=0.25))
    heat.flush()
    assert heat.color_levels() == pytest.approx((0.01, 0.03))  # the data's range
    before = heat.image_data().copy()
    heat.set_metric("cosine between changes")
    heat.flush()
    after = heat.image_data()
    assert not np.array_equal(before, after, equal_nan=True)
    assert after[KINDS.index("attn.q"), 0] == pytest.approx(-0.5)
    assert heat.color_levels() == pytest.approx((-0.5, 0.5))  # diverging: centred on zero
    heat.set_metric("relative change")
    heat.add_tensor(tensor_ev("l1.q", 1, "attn.q", 10, 0.001, 0.05, 0.001))
    heat.flush()
    assert heat.color_levels() == pytest.approx((0.01, 0.03))  # mean of inputs: 0.0255 is inside
    heat.set_model("ft-b")
    heat.flush()
    assert heat.color_levels() == pytest.approx((0.01, 0.05))
    heat.reset()
    heat.add_tensor(tensor_ev("l1.q", 1, "attn.q", 10, 0.001, 0.001, 0.001))
    heat.flush()
    low, high = heat.color_levels()
    assert low < 0.001 < high and high - low < 0.001  # one value: a small span around it
    assert heat.metric_names() == ["relative change", "result change", "cosine between changes",
                                   "sign-conflict rate", "fraction kept"]
    with pytest.raises(ValueError):
        heat.set_metric("nope")


def test_heatmap_none_metrics_are_blank(heat):
    heat.add_tensor(tensor_ev("l0.q", 0, "attn.q", 10, 0.1, 0.1, 0.1))  # a linear merge
    heat.set_metric("sign-conflict rate")
    heat.flush()
    assert heat.cell_value(0, "attn.q") is None
    assert np.isnan(heat.image_data()).all()
    assert "not computed" in heat._hint.text()
    assert "not computed" in heat.describe_cell(0, "attn.q")


def test_heatmap_hover_readout(heat, qtbot):
    heat.show()
    qtbot.waitExposed(heat)
    heat.add_tensor(tensor_ev("model.layers.0.mlp.up_proj.weight", 0, "mlp.up", 10, 0.1, 0.2, 0.3))
    heat.add_tensor(tensor_ev("model.layers.1.mlp.up_proj.weight", 1, "mlp.up", 10, 0.3, 0.2, 0.3))
    heat.flush()
    vb = heat._plot.vb
    qtbot.waitUntil(lambda: vb.width() > 100, timeout=10_000)  # laid out
    heat._on_mouse_moved(vb.mapViewToScene(QPointF(1.1, KINDS.index("mlp.up") - 0.2)))
    text = heat._readout.text()
    assert "layer 1" in text and "mlp.up" in text and "0.25" in text
    assert "model.layers.1.mlp.up_proj.weight" in text


def test_heatmap_csv_and_png(heat, tmp_path):
    heat.add_tensor(tensor_ev("a", 0, "attn.k", 100, 0.1, 0.3, 0.2, kept_fraction=0.4))
    heat.add_tensor(tensor_ev("b", 0, "attn.k", 300, 0.3, 0.5, 0.4, kept_fraction=0.2))
    heat.add_tensor(tensor_ev("head", None, "lm_head", 50, 0.01, 0.02, 0.015))
    heat.save_csv(tmp_path / "h.csv")
    rows = read_csv(tmp_path / "h.csv")
    assert [(r["layer"], r["kind"], r["tensors"], r["numel"]) for r in rows] == [
        ("", "lm_head", "head", "50"), ("0", "attn.k", "a;b", "400")]
    k = rows[1]
    assert float(k["relative_change[ft-a]"]) == pytest.approx(0.25)
    assert float(k["relative_change_mean"]) == pytest.approx(0.35)
    assert float(k["result_change"]) == pytest.approx(0.35)
    assert float(k["kept_fraction"]) == pytest.approx(0.25)
    assert k["cosine"] == "" and rows[0]["kept_fraction"] == ""
    heat.save_png(tmp_path / "h.png")
    assert_png(tmp_path / "h.png")


# ---- screenshots with realistic data (docs) ------------------------------------------------

LLAMA = [("self_attn.q_proj", "attn.q", 4096 * 4096), ("self_attn.k_proj", "attn.k", 1024 * 4096),
         ("self_attn.v_proj", "attn.v", 1024 * 4096), ("self_attn.o_proj", "attn.o", 4096 * 4096),
         ("mlp.gate_proj", "mlp.gate", 14336 * 4096), ("mlp.up_proj", "mlp.up", 14336 * 4096),
         ("mlp.down_proj", "mlp.down", 14336 * 4096), ("input_layernorm", "norm", 4096),
         ("post_attention_layernorm", "norm", 4096)]


def realistic_tensors(n_layers=24):
    rng = np.random.default_rng(0)
    yield tensor_ev("model.embed_tokens.weight", None, "embed", 128256 * 4096, 0.004, 0.006,
                    0.004, cosine=0.12, sign_conflict=0.41, kept_fraction=0.22)
    for k in range(n_layers):
        depth = k / (n_layers - 1)
        for suffix, kind, numel in LLAMA:
            scale = 0.6 if kind == "norm" else 1.0 + 0.3 * (kind.startswith("mlp"))
            a = scale * (0.008 + 0.02 * depth) * rng.uniform(0.9, 1.1)
            b = scale * (0.02 - 0.012 * depth) * rng.uniform(0.9, 1.1)
            yield tensor_ev(f"model.layers.{k}.{suffix}.weight", k, kind, numel, a, b,
                            0.55 * (a + b), cosine=float(rng.uniform(-0.1, 0.4)),
                            sign_conflict=float(rng.uniform(0.3, 0.48)),
                            kept_fraction=float(rng.uniform(0.18, 0.3)))
    yield tensor_ev("model.norm.weight", None, "norm", 4096, 0.01, 0.012, 0.011)
    yield tensor_ev("lm_head.weight", None, "lm_head", 128256 * 4096, 0.005, 0.004, 0.004,
                    cosine=0.2, sign_conflict=0.38, kept_fraction=0.24)


def layer_aggregate(tensors, layer):
    ts = [t for t in tensors if t.layer == layer]
    w = np.array([t.numel for t in ts], float)
    avg = lambda xs: float(np.average(xs, weights=w))  # noqa: E731
    return LayerMetrics(layer, MODELS, np.array([avg([t.input_change[i] for t in ts])
                                                 for i in range(2)]),
                        avg([t.result_change for t in ts]), tensors=len(ts))


@pytest.mark.screenshot
def test_screenshots_with_realistic_data(qtbot, tmp_path):
    SCREENSHOTS = screenshots_dir()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tensors = list(realistic_tensors())
    plot, heat = LayerChangePlot(), MetricHeatmap()
    for w in (plot, heat):
        qtbot.addWidget(w)
        w.resize(900, 520)
        w.show()
        qtbot.waitExposed(w)
    plot.reset(MODELS)
    for t in tensors:
        heat.add_tensor(t)
    for layer in [*range(24), None]:
        plot.add_layer(layer_aggregate(tensors, layer))
    plot.flush()
    plot.hover_layer(12)
    heat.flush()
    heat._on_mouse_moved(heat._plot.vb.mapViewToScene(QPointF(13, KINDS.index("mlp.up"))))
    assert plot.point_counts() == {"ft-a": 24, "ft-b": 24, "result": 24}
    qtbot.wait(100)  # let the labels' new text settle into the layout before grabbing
    assert plot.grab().save(str(SCREENSHOTS / "layer_plot.png"))
    assert heat.grab().save(str(SCREENSHOTS / "heatmap.png"))
    heat.set_metric("cosine between changes")
    heat.flush()
    assert heat.grab().save(str(tmp_path / "heatmap_cosine.png"))
    heat.save_png(tmp_path / "heatmap_export.png")
    plot.save_png(tmp_path / "layer_export.png")
    for p in (SCREENSHOTS / "layer_plot.png", SCREENSHOTS / "heatmap.png"):
        assert_png(p)
