"""Live curves of a distillation: every loss term (train solid, eval dashed with dots), and below
them the learning rate and TAID's t. Filled from TrainStep / EvalStep events, drawn throttled."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from fusion_gui.events import EvalStep, TrainStep
from fusion_gui.ui.plots.layer_plot import PALETTE
from fusion_gui.ui.plots.throttle import RedrawThrottle

LR, TAID_T = "lr", "taid_t"  # point_counts() keys of the lower plots; loss curves are "train/x", "eval/x"


class _Series:
    """x, y in growing numpy buffers: appending is O(1), drawing takes views, not copies."""

    def __init__(self) -> None:
        self._x, self._y, self.n = np.empty(64), np.empty(64), 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self._x):
            self._x, self._y = np.resize(self._x, 2 * self.n), np.resize(self._y, 2 * self.n)
        self._x[self.n], self._y[self.n] = x, y
        self.n += 1

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]


def _small_plot(plot: pg.PlotItem, label: str) -> None:
    plot.setLabel("left", label)
    plot.setLabel("bottom", "step")
    plot.showGrid(x=True, y=True, alpha=0.25)
    plot.setDownsampling(mode="peak")
    plot.setClipToView(True)
    plot.getAxis("left").setWidth(60)
    for side in ("left", "bottom"):
        plot.getAxis(side).enableAutoSIPrefix(False)


class LossPlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._throttle = RedrawThrottle(self._redraw, parent=self)
        self._glw = pg.GraphicsLayoutWidget()
        self._glw.setMinimumSize(360, 300)
        self._loss = self._glw.addPlot(row=0, col=0, colspan=2)
        _small_plot(self._loss, "loss")
        self._loss.setTitle("Loss terms (solid: train, dashed: held-out; log scale)", size="9pt")
        self._loss.setLogMode(y=True)  # terms differ by orders of magnitude (KL ~0.01, CE ~5)
        # the legend gets its own column: inside the plot it would hide the curves it names
        self._legend = pg.LegendItem(labelTextSize="8pt", verSpacing=-4)
        self._glw.addItem(self._legend, row=0, col=2)
        self._legend.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)  # rows stay packed
        self._glw.ci.layout.setAlignment(self._legend, Qt.AlignmentFlag.AlignTop)
        self._lr_plot = self._glw.addPlot(row=1, col=0)
        _small_plot(self._lr_plot, "learning rate")
        self._t_plot = self._glw.addPlot(row=1, col=1)
        _small_plot(self._t_plot, "TAID t")
        self._glw.ci.layout.setRowStretchFactor(0, 3)
        self._glw.ci.layout.setRowStretchFactor(1, 1)
        self._lr_curve = self._lr_plot.plot([], [], pen=pg.mkPen("#56B4E9", width=1.5))
        self._t_curve = self._t_plot.plot([], [], pen=pg.mkPen("#E69F00", width=1.5))
        self._series: dict[str, _Series] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._colors: dict[str, str] = {}
        self._train_rows: list[TrainStep] = []
        self._eval_rows: list[EvalStep] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self._glw)
        self.reset()

    # ---- data in -------------------------------------------------------------------------
    def reset(self) -> None:
        for curve in self._curves.values():
            self._legend.removeItem(curve)
            self._loss.removeItem(curve)
        self._curves.clear()
        self._colors.clear()
        self._series = {LR: _Series(), TAID_T: _Series()}
        self._train_rows, self._eval_rows = [], []
        self._throttle.flush()

    def handle_event(self, event: object) -> None:
        if isinstance(event, TrainStep):
            self.add_train(event)
        elif isinstance(event, EvalStep):
            self.add_eval(event)

    def add_train(self, ev: TrainStep) -> None:
        self._train_rows.append(ev)
        for term, value in ev.losses.items():
            self._point(f"train/{term}", ev.step, value)
        self._series[LR].append(ev.step, ev.lr)
        if ev.taid_t is not None:
            self._series[TAID_T].append(ev.step, ev.taid_t)
        self._throttle.schedule()

    def add_eval(self, ev: EvalStep) -> None:
        self._eval_rows.append(ev)
        for term, value in ev.losses.items():
            self._point(f"eval/{term}", ev.step, value)
        self._throttle.schedule()

    def flush(self) -> None:
        self._throttle.flush()

    # ---- queries / export ----------------------------------------------------------------
    def point_counts(self) -> dict[str, int]:
        """Points per curve: "train/<term>", "eval/<term>", "lr" and "taid_t" (only non-empty ones)."""
        return {k: s.n for k, s in self._series.items() if s.n}

    def curve_data(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) as last drawn, before the log scale; key as in point_counts()."""
        curve = {LR: self._lr_curve, TAID_T: self._t_curve}.get(key) or self._curves[key]
        x, y = curve.getOriginalDataset()
        return (np.asarray([] if x is None else x), np.asarray([] if y is None else y))

    def save_png(self, path: str | Path) -> None:
        self.flush()
        exporter = ImageExporter(self._glw.ci)
        exporter.parameters()["width"] = int(max(1000, self._glw.width()))
        exporter.export(str(path))

    def save_csv(self, path: str | Path) -> None:
        """One row per train step and per evaluation (split = train | eval), a column per term."""
        terms = sorted({t for ev in (*self._train_rows, *self._eval_rows) for t in ev.losses})
        rows = [(ev.step, "train", ev) for ev in self._train_rows] + [(ev.step, "eval", ev) for ev in self._eval_rows]
        rows.sort(key=lambda r: (r[0], r[1] == "eval"))
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["step", "split", "epoch", "lr", "taid_t", "elapsed_s", *terms])
            for step, split, ev in rows:
                train = split == "train"
                w.writerow([step, split, repr(ev.epoch) if train else "", repr(ev.lr) if train else "",
                            repr(ev.taid_t) if train and ev.taid_t is not None else "",
                            f"{ev.elapsed_s:.3f}" if train else "",
                            *(repr(float(ev.losses[t])) if t in ev.losses else "" for t in terms)])

    # ---- drawing -------------------------------------------------------------------------
    def _point(self, key: str, step: int, value: float) -> None:
        if key not in self._series:
            self._series[key] = _Series()
            self._add_curve(key)
        self._series[key].append(step, value if math.isfinite(value) else math.nan)

    def _add_curve(self, key: str) -> None:
        split, term = key.split("/", 1)
        if term not in self._colors:
            self._colors[term] = "#FFFFFF" if term == "total" else PALETTE[len(self._colors) % len(PALETTE)]
        color = self._colors[term]
        if split == "train":
            pen = pg.mkPen(color, width=2.5 if term == "total" else 1.5)
            curve = pg.PlotDataItem([], [], pen=pen, connect="finite")
        else:
            curve = pg.PlotDataItem([], [], pen=pg.mkPen(color, width=1.5, style=Qt.PenStyle.DashLine),
                                    connect="finite", symbol="o", symbolSize=5, symbolBrush=color, symbolPen=None)
        self._loss.addItem(curve)
        self._curves[key] = curve
        if split == "train" or f"train/{term}" not in self._series:  # eval twins share the train colour
            self._legend.addItem(curve, f"{term} (held-out)" if split == "eval" else term)

    def _redraw(self) -> None:
        for key, curve in self._curves.items():
            s = self._series[key]
            curve.setData(s.x, s.y)
        self._lr_curve.setData(self._series[LR].x, self._series[LR].y)
        self._t_curve.setData(self._series[TAID_T].x, self._series[TAID_T].y)
