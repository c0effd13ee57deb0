"""Line plot of each model's change from the base, per layer, filled live from LayerMetrics."""

from __future__ import annotations

import csv
import html
import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from fusion_gui.events import LayerMetrics
from fusion_gui.ui.plots.layer_axis import LayerAxis
from fusion_gui.ui.plots.legend import StripLegend
from fusion_gui.ui.plots.throttle import RedrawThrottle

RESULT = "result"  # point_counts() key of the merge-result curve
RESULT_LABEL = "merge result"
# Okabe-Ito: distinguishable with common colour-vision deficiencies, readable on a dark background.
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")


def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.5g}"


def _model_value(ev: LayerMetrics, name: str) -> float:
    try:
        return float(ev.input_change[ev.models.index(name)])
    except (ValueError, IndexError):
        return math.nan


class LayerChangePlot(QWidget):
    """x = layer, y = ||model - base|| / ||base||; one curve per input plus the merge result."""

    layer_clicked = Signal(int)  # the layer nearest a click (the drill-down opens its tensors)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._models: tuple[str, ...] = ()
        self._layers: dict[int, LayerMetrics] = {}
        self._outside: LayerMetrics | None = None  # tensors outside numbered layers (layer=None)
        self._show_result = True
        self._throttle = RedrawThrottle(self._redraw, parent=self)

        self._pw = pg.PlotWidget(axisItems={"bottom": LayerAxis("bottom")})
        self._pw.setMinimumSize(320, 200)
        self._plot = self._pw.getPlotItem()
        self._plot.setLabel("bottom", "layer", units="index")
        self._plot.setLabel("left", "relative change ‖W − W_base‖ / ‖W_base‖",
                            units="ratio")
        for side in ("bottom", "left"):
            self._plot.getAxis(side).enableAutoSIPrefix(False)
        self._plot.showGrid(x=True, y=True, alpha=0.25)
        self._plot.setDownsampling(mode="peak")
        self._plot.setClipToView(True)
        self._legend = StripLegend(self._plot)
        self._vline = pg.InfiniteLine(angle=90, movable=False,
                                      pen=pg.mkPen("#888", style=Qt.DashLine))
        self._vline.setVisible(False)
        self._plot.addItem(self._vline, ignoreBounds=True)
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._result_curve = self._plot.plot(
            [], [], name=RESULT_LABEL, pen=pg.mkPen("w", width=3), connect="finite",
            symbol="o", symbolSize=6, symbolBrush="w", symbolPen=None)

        self._readout = QLabel()
        self._readout.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self._readout.setWordWrap(True)
        self._readout.setMinimumHeight(2 * self._readout.fontMetrics().lineSpacing() + 4)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self._pw, 1)
        lay.addWidget(self._readout)
        self._pw.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self._pw.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._update_readout(None)

    # ---- data in -------------------------------------------------------------------------
    def reset(self, models: tuple[str, ...]) -> None:
        for curve in self._curves.values():
            self._legend.removeItem(curve)
            self._plot.removeItem(curve)
        self._curves.clear()
        self._layers.clear()
        self._outside = None
        self._models = ()
        self._vline.setVisible(False)
        self._plot.enableAutoRange(x=True)
        self._ensure_curves(tuple(models))
        self._throttle.flush()

    def set_layer_count(self, layers: int) -> None:
        """Show every layer from the start, so the axis does not grow as layers finish."""
        if layers > 0:
            self._plot.setXRange(-0.5, layers - 0.5, padding=0)  # also turns x auto-range off

    def add_layer(self, ev: LayerMetrics) -> None:
        self._ensure_curves(ev.models)
        if ev.layer is None:
            self._outside = ev
        else:
            self._layers[int(ev.layer)] = ev
        self._throttle.schedule()

    def set_show_result(self, show: bool) -> None:
        if show == self._show_result:
            return
        self._show_result = show
        self._result_curve.setVisible(show)
        if show:
            self._legend.addItem(self._result_curve, RESULT_LABEL)
        else:
            self._legend.removeItem(self._result_curve)
        self._update_readout(None)

    def flush(self) -> None:
        """Draw pending data now instead of on the next throttle tick."""
        self._throttle.flush()

    # ---- queries / export ----------------------------------------------------------------
    def point_counts(self) -> dict[str, int]:
        """Finite points per shown curve, by model name; the merge result under "result"."""
        counts = {m: sum(math.isfinite(_model_value(ev, m)) for ev in self._layers.values())
                  for m in self._models}
        if self._show_result:
            counts[RESULT] = sum(math.isfinite(ev.result_change) for ev in self._layers.values())
        return counts

    def curve_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) as drawn; name is a model name or "result"."""
        curve = self._result_curve if name == RESULT else self._curves[name]
        x, y = curve.getData()
        return (np.asarray([] if x is None else x), np.asarray([] if y is None else y))

    def save_png(self, path: str | Path) -> None:
        self.flush()
        crosshair = self._vline.isVisible()
        self._vline.setVisible(False)
        exporter = ImageExporter(self._plot)
        exporter.parameters()["width"] = int(max(1000, self._pw.width()))
        exporter.export(str(path))
        self._vline.setVisible(crosshair)

    def save_csv(self, path: str | Path) -> None:
        """One row per layer (the row with an empty layer = tensors outside numbered layers)."""
        rows = [self._layers[k] for k in sorted(self._layers)]
        if self._outside is not None:
            rows.append(self._outside)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["layer", *(f"change[{m}]" for m in self._models), "result_change",
                        "cosine", "sign_conflict", "kept_fraction", "tensors"])
            for ev in rows:
                opt = [("" if v is None else repr(float(v)))
                       for v in (ev.cosine, ev.sign_conflict, ev.kept_fraction)]
                w.writerow(["" if ev.layer is None else ev.layer,
                            *(repr(_model_value(ev, m)) for m in self._models),
                            repr(float(ev.result_change)), *opt, ev.tensors])

    # ---- drawing -------------------------------------------------------------------------
    def _ensure_curves(self, models: tuple[str, ...]) -> None:
        if self._legend.items and all(m in self._curves for m in models):
            return
        for name in models:
            if name in self._curves:
                continue
            color = PALETTE[len(self._curves) % len(PALETTE)]
            curve = pg.PlotDataItem([], [], pen=pg.mkPen(color, width=1.5), connect="finite",
                                    symbol="o", symbolSize=5, symbolBrush=color, symbolPen=None)
            self._plot.addItem(curve)
            self._curves[name] = curve
            self._models += (name,)
        # keep the legend order: inputs first, merge result last
        self._legend.clear()
        for name in self._models:
            self._legend.addItem(self._curves[name], name)
        if self._show_result:
            self._legend.addItem(self._result_curve, RESULT_LABEL)

    def _redraw(self) -> None:
        xs = sorted(self._layers)
        x = np.asarray(xs, dtype=float)
        for name, curve in self._curves.items():
            curve.setData(x, np.array([_model_value(self._layers[k], name) for k in xs]))
        self._result_curve.setData(x, np.array([self._layers[k].result_change for k in xs], float))
        self._update_readout(None)

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        vb = self._plot.vb
        if vb.sceneBoundingRect().contains(scene_pos):
            self.hover_layer(vb.mapSceneToView(scene_pos).x())

    def _on_mouse_clicked(self, event) -> None:
        vb = self._plot.vb
        if self._layers and vb.sceneBoundingRect().contains(event.scenePos()):
            x = vb.mapSceneToView(event.scenePos()).x()
            self.layer_clicked.emit(min(self._layers, key=lambda k: abs(k - x)))

    def hover_layer(self, x: float) -> None:
        """Snap the crosshair to the layer nearest x and show its values (mouse or tests)."""
        if not self._layers:
            return
        layer = min(self._layers, key=lambda k: abs(k - x))
        self._vline.setPos(layer)
        self._vline.setVisible(True)
        self._update_readout(layer)

    def _describe(self, ev: LayerMetrics, title: str) -> str:
        parts = []
        for i, name in enumerate(self._models):
            color = PALETTE[i % len(PALETTE)]
            value = _fmt(_model_value(ev, name))
            parts.append(f"<span style='color:{color}'>{html.escape(name)}</span> {value}")
        if self._show_result:
            parts.append(f"{RESULT_LABEL} {_fmt(ev.result_change)}")
        for label, v in (("cos", ev.cosine), ("sign conflict", ev.sign_conflict),
                         ("kept", ev.kept_fraction)):
            if v is not None:
                parts.append(f"{label} {_fmt(v)}")
        return f"<b>{title}</b> " + " · ".join(parts)

    def _update_readout(self, layer: int | None) -> None:
        lines = []
        if layer is not None and layer in self._layers:
            lines.append(self._describe(self._layers[layer], f"layer {layer}:"))
        else:
            lines.append("Hover over the plot to read exact values per layer; click to open a layer's tensors."
                         if self._layers
                         else "Waiting for the first layer…")
        if self._outside is not None:
            lines.append(self._describe(self._outside, "outside numbered layers:"))
        self._readout.setText("<br>".join(lines))

    # exposed for tests and for the window's status bar
    def readout_text(self) -> str:
        return self._readout.text()
