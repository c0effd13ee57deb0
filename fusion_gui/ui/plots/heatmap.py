"""Heatmap of one metric over tensor kinds (rows) x layers (columns), fed live by TensorMetrics."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter
from PySide6.QtCore import QPointF, Signal
from PySide6.QtGui import QFontMetrics, QTransform
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGraphicsRectItem, QHBoxLayout, QLabel,
                               QVBoxLayout, QWidget)
from superqt import QElidingLabel

from fusion_gui.engine.naming import KINDS  # the heatmap's rows, in display order
from fusion_gui.events import TensorMetrics
from fusion_gui.ui.plots.color_scale import data_levels
from fusion_gui.ui.plots.throttle import RedrawThrottle

MEAN = "mean of inputs"
OUTSIDE = "–"  # column label for tensors outside numbered layers
MISSING_COLOR = "#4a4a4a"


@dataclass(frozen=True)
class Metric:
    key: str  # TensorMetrics field, or "input" (model chosen in the second combo)
    colormap: str
    diverging: bool = False  # the scale is centred on zero
    not_computed: str = ""  # why a cell can lack this metric
    merge_only: bool = False  # describes a merge's result: not offered when comparing models


METRICS = {
    "relative change": Metric("input", "viridis"),
    "result change": Metric("result_change", "viridis", merge_only=True),
    "cosine between changes": Metric("cosine", "CET-D1", True, "cosine needs at least two input models"),
    "sign-conflict rate": Metric("sign_conflict", "viridis", False,
                                 "only TIES-like methods report sign conflicts"),
    "fraction kept": Metric("kept_fraction", "viridis", False,
                            "only sparsifying methods (TIES, DARE, …) report the kept fraction", merge_only=True),
}
LOCK_TIP = ("Keep the colour scale where it is while data arrives, between runs and across models, "
            "so colours stay comparable; untick to fit the scale to the data again.")


def _finite(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class _Cell:
    """numel-weighted running means of every metric over the tensors of one (layer, kind)."""

    names: list[str] = field(default_factory=list)
    numel: int = 0
    wsum: dict[str, float] = field(default_factory=dict)
    weight: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, value, w: float) -> None:
        value = _finite(value)
        if value is not None and w > 0:
            self.wsum[key] = self.wsum.get(key, 0.0) + w * value
            self.weight[key] = self.weight.get(key, 0.0) + w

    def value(self, key: str) -> float | None:
        w = self.weight.get(key, 0.0)
        return self.wsum[key] / w if w > 0 else None


def _layer_label(layer: int | None) -> str:
    return OUTSIDE if layer is None else str(layer)


class MetricHeatmap(QWidget):
    """for_merge=False (Compare): only the metrics that mean something without a merge result."""

    cell_clicked = Signal(list)  # the tensor names of the clicked cell (the drill-down opens them)

    def __init__(self, parent: QWidget | None = None, for_merge: bool = True) -> None:
        super().__init__(parent)
        self._cells: dict[tuple[int | None, str], _Cell] = {}
        self._models: list[str] = []
        self._metrics = [name for name, m in METRICS.items() if for_merge or not m.merge_only]
        self._locked: dict[str, tuple[float, float]] = {}  # metric name -> colour levels kept
        self._columns: list[int | None] = []
        self._throttle = RedrawThrottle(self._redraw, parent=self)

        self._metric_box = QComboBox()
        self._metric_box.addItems(self._metrics)
        self._model_box = QComboBox()
        self._model_box.addItem(MEAN)
        self._model_label = QLabel("of")
        self.lock_box = QCheckBox("Lock colour scale")
        self.lock_box.setToolTip(LOCK_TIP)
        top = QHBoxLayout()
        top.addWidget(QLabel("Metric"))
        top.addWidget(self._metric_box)
        top.addWidget(self._model_label)
        top.addWidget(self._model_box)
        top.addStretch(1)
        top.addWidget(self.lock_box)

        self._pw = pg.PlotWidget()
        self._pw.setMinimumSize(320, 240)
        self._plot = self._pw.getPlotItem()
        self._plot.invertY(True)  # embed on top, lm_head near the bottom
        self._plot.setDefaultPadding(0.0)
        self._plot.setMouseEnabled(False, False)
        self._plot.setMenuEnabled(False)
        self._plot.hideButtons()
        self._plot.getViewBox().setBackgroundColor(MISSING_COLOR)
        self._plot.setLabel("bottom", f"layer ({OUTSIDE} = outside numbered layers)")
        for side in ("bottom", "left"):  # cell indices: never "(x0.001)" on an empty map
            self._plot.getAxis(side).enableAutoSIPrefix(False)
        left = self._plot.getAxis("left")
        left.setTicks([list(enumerate(KINDS)), []])
        left.setWidth(QFontMetrics(self.font()).horizontalAdvance("mlp.gate") + 16)
        self._image = pg.ImageItem(axisOrder="row-major")
        self._image.setTransform(QTransform().translate(-0.5, -0.5))  # cell centres on integers
        self._plot.addItem(self._image)
        self._bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap="viridis",
                                    interactive=False, width=15)
        self._bar.axis.enableAutoSIPrefix(False)
        fm = QFontMetrics(self.font())
        self._bar.axis.setWidth(fm.horizontalAdvance("-0.035") + fm.height() + 16)
        self._hover = QGraphicsRectItem(0, 0, 1, 1)
        self._hover.setPen(pg.mkPen("w", width=2))
        self._hover.setVisible(False)
        self._plot.addItem(self._hover, ignoreBounds=True)
        self._bar.setImageItem(self._image, insert_in=self._plot)

        self._hint = QLabel()
        self._hint.setWordWrap(True)
        self._readout = QElidingLabel()  # one line; long tensor lists are elided, see tooltip
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self._pw, 1)
        lay.addWidget(self._hint)
        lay.addWidget(self._readout)

        self._metric_box.currentTextChanged.connect(self._on_choice_changed)
        self._model_box.currentTextChanged.connect(self._on_choice_changed)
        self.lock_box.toggled.connect(self._on_lock_toggled)
        self._pw.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self._pw.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._on_choice_changed()

    # ---- data in -------------------------------------------------------------------------
    def reset(self) -> None:
        self._cells.clear()
        self._models.clear()  # a locked colour scale stays: it is there to compare runs
        self._hover.setVisible(False)
        self._model_box.blockSignals(True)
        self._model_box.clear()
        self._model_box.addItem(MEAN)
        self._model_box.blockSignals(False)
        self._throttle.flush()

    def add_tensor(self, ev: TensorMetrics) -> None:
        kind = ev.kind if ev.kind in KINDS else "other"
        cell = self._cells.setdefault((ev.layer, kind), _Cell())
        cell.names.append(ev.name)
        cell.numel += int(ev.numel)
        w = float(ev.numel)
        changes = [_finite(v) for v in np.asarray(ev.input_change, dtype=float).ravel()]
        for name, v in zip(ev.models, changes):
            if name not in self._models:
                self._models.append(name)
                self._model_box.addItem(name)
            cell.add(f"input:{name}", v, w)
        known = [v for v in changes if v is not None]
        cell.add(f"input:{MEAN}", sum(known) / len(known) if known else None, w)
        for key in ("result_change", "cosine", "sign_conflict", "kept_fraction"):
            cell.add(key, getattr(ev, key), w)
        self._throttle.schedule()

    def set_metric(self, name: str) -> None:
        if name not in self._metrics:
            raise ValueError(f"unknown metric {name!r}; expected one of {self._metrics}")
        self._metric_box.setCurrentText(name)

    def set_model(self, name: str | None) -> None:
        """Which input the "relative change" metric shows; None = the mean over inputs."""
        self._model_box.setCurrentText(name or MEAN)

    def metric_names(self) -> list[str]:
        return list(self._metrics)

    def color_levels(self) -> tuple[float, float]:
        """The values at the two ends of the colour bar."""
        low, high = self._bar.levels()
        return float(low), float(high)

    def flush(self) -> None:
        self._throttle.flush()

    # ---- queries / export ----------------------------------------------------------------
    def _key(self) -> str:
        metric = METRICS[self._metric_box.currentText()]
        return f"input:{self._model_box.currentText()}" if metric.key == "input" else metric.key

    def cell_value(self, layer: int | None, kind: str) -> float | None:
        cell = self._cells.get((layer, kind if kind in KINDS else "other"))
        return None if cell is None else cell.value(self._key())

    def image_data(self) -> np.ndarray:
        """The array on screen: rows = KINDS, columns = layers (NaN = blank)."""
        img = self._image.image
        return np.empty((len(KINDS), 0)) if img is None else np.array(img)

    def save_png(self, path: str | Path) -> None:
        self.flush()
        hovered = self._hover.isVisible()
        self._hover.setVisible(False)
        exporter = ImageExporter(self._plot)
        exporter.parameters()["width"] = int(max(1000, self._pw.width()))
        exporter.export(str(path))
        self._hover.setVisible(hovered)

    def save_csv(self, path: str | Path) -> None:
        """Long format, one row per (layer, kind); empty layer = outside numbered layers."""
        keys = [f"input:{MEAN}", *(f"input:{m}" for m in self._models),
                "result_change", "cosine", "sign_conflict", "kept_fraction"]
        head = ["relative_change_mean", *(f"relative_change[{m}]" for m in self._models),
                "result_change", "cosine", "sign_conflict", "kept_fraction"]
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["layer", "kind", "tensors", "numel", *head])
            for layer in self._column_layers():
                for kind in KINDS:
                    cell = self._cells.get((layer, kind))
                    if cell is None:
                        continue
                    vals = [cell.value(k) for k in keys]
                    w.writerow(["" if layer is None else layer, kind, ";".join(cell.names),
                                cell.numel, *("" if v is None else repr(v) for v in vals)])

    # ---- drawing -------------------------------------------------------------------------
    def _column_layers(self) -> list[int | None]:
        layers = sorted({layer for layer, _ in self._cells if layer is not None})
        cols: list[int | None] = [None] if any(k[0] is None for k in self._cells) else []
        return cols + (list(range(min(0, layers[0]), layers[-1] + 1)) if layers else [])

    def _on_choice_changed(self, *_args) -> None:
        name = self._metric_box.currentText()
        metric = METRICS[name]
        per_model = metric.key == "input"
        self._model_box.setVisible(per_model)
        self._model_label.setVisible(per_model)
        self._bar.setColorMap(metric.colormap)
        self._bar.axis.setLabel(name)
        self.lock_box.blockSignals(True)
        self.lock_box.setChecked(name in self._locked)
        self.lock_box.blockSignals(False)
        self._throttle.flush()

    def _on_lock_toggled(self, locked: bool) -> None:
        name = self._metric_box.currentText()
        if locked:
            self._locked[name] = self.color_levels()
        else:
            self._locked.pop(name, None)
            self._throttle.flush()

    def _redraw(self) -> None:
        name = self._metric_box.currentText()
        metric = METRICS[name]
        key = self._key()
        self._columns = self._column_layers()
        img = np.full((len(KINDS), max(1, len(self._columns))), np.nan)
        for c, layer in enumerate(self._columns):
            for r, kind in enumerate(KINDS):
                cell = self._cells.get((layer, kind))
                v = None if cell is None else cell.value(key)
                img[r, c] = np.nan if v is None else v
        levels = self._locked.get(name) or data_levels(img, metric.diverging)
        self._image.setImage(img, autoLevels=False)
        self._bar.setLevels(levels)
        n = len(self._columns)
        step = next(s for s in (1, 2, 4, 5, 8, 10, 16, 20, 25, 50, 100, 1000) if n / s <= 16)
        major = [(c, _layer_label(layer)) for c, layer in enumerate(self._columns)
                 if layer is None or layer % step == 0]
        self._plot.getAxis("bottom").setTicks([major, [(c, "") for c in range(n)]])
        self._plot.setXRange(-0.5, max(1, n) - 0.5, padding=0)
        self._plot.setYRange(-0.5, len(KINDS) - 0.5, padding=0)
        missing = bool(self._cells) and bool(np.isnan(img[:, :n]).any())
        reason = metric.not_computed
        if not missing:
            text = ""
        elif reason and all(c.value(key) is None for c in self._cells.values()):
            text = f"Blank (grey): {name} not computed in this run; {reason}."
        else:
            text = "Grey cells: no tensor of that kind in that layer" + (
                f", or not computed ({reason})." if reason else ".")
        self._hint.setText(text)
        self._readout.setText("Hover over a cell to read its exact value; click it to open its tensors." if self._cells
                              else "Waiting for the first tensor…")

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        vb = self._plot.vb
        if not self._columns or not vb.sceneBoundingRect().contains(scene_pos):
            return
        p = vb.mapSceneToView(scene_pos)
        c, r = round(p.x()), round(p.y())
        if 0 <= c < len(self._columns) and 0 <= r < len(KINDS):
            self._hover.setRect(c - 0.5, r - 0.5, 1, 1)
            self._hover.setVisible(True)
            text = self.describe_cell(self._columns[c], KINDS[r])
            self._readout.setText(text)
            self._readout.setToolTip(text)

    def _on_mouse_clicked(self, event) -> None:
        vb = self._plot.vb
        if not self._columns or not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        p = vb.mapSceneToView(event.scenePos())
        c, r = round(p.x()), round(p.y())
        if 0 <= c < len(self._columns) and 0 <= r < len(KINDS):
            self.click_cell(self._columns[c], KINDS[r])

    def click_cell(self, layer: int | None, kind: str) -> None:
        """Ask for the drill-down of the cell's tensors (mouse or tests); nothing for an empty cell."""
        cell = self._cells.get((layer, kind))
        if cell is not None:
            self.cell_clicked.emit(list(cell.names))

    def layer_tensors(self, layer: int | None) -> list[str]:
        """Every tensor seen in one layer, in the rows' order."""
        return [n for kind in KINDS for n in (self._cells.get((layer, kind)) or _Cell()).names]

    def describe_cell(self, layer: int | None, kind: str) -> str:
        """The hover read-out for one cell."""
        where = "outside numbered layers" if layer is None else f"layer {layer}"
        name = self._metric_box.currentText()
        if METRICS[name].key == "input":
            name += f" ({self._model_box.currentText()})"
        cell = self._cells.get((layer, kind))
        if cell is None:
            return f"{where} · {kind}: no tensor"
        v = cell.value(self._key())
        shown = "not computed" if v is None else f"{v:.6g}"
        return f"{where} · {kind} · {name} = {shown} · {', '.join(cell.names)}"
