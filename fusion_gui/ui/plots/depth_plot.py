"""Two models of different depths side by side: A's layers in the left column, B's in the right, each
at its relative depth, a line from each layer of A to its matched layer of B coloured by their cosine."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg

from fusion_gui.events import DepthMatch
from fusion_gui.ui.plots.empty_text import EmptyPlotText
from fusion_gui.ui.plots.similarity_plots import short_name

COLORMAP = "viridis"


def _depth(i: int, layers: int) -> float:
    return 0.0 if layers <= 1 else i / (layers - 1)


class DepthMapPlot(pg.PlotWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        item = self.getPlotItem()
        item.invertY(True)  # the first layer on top, as the model reads
        item.setMouseEnabled(False, False)
        item.setMenuEnabled(False)
        item.hideButtons()
        item.setLabel("left", "relative depth")
        item.getAxis("left").enableAutoSIPrefix(False)
        self.lines: list[tuple[int, int]] = []
        self._cmap = pg.colormap.get(COLORMAP)
        self.empty = EmptyPlotText(self, "Each layer of A, joined to the layer of B at the same relative depth, "
                                         "appears here.")

    def show_match(self, r: DepthMatch) -> None:
        item = self.getPlotItem()
        item.clear()
        self.empty.hide_text()
        self.lines = list(enumerate(r.mapping))
        finite = [c for c in r.cosine if math.isfinite(c)]
        low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
        span = max(high - low, 1e-9)
        for i, j in self.lines:
            c = r.cosine[i]
            color = self._cmap.map((c - low) / span, mode="qcolor") if math.isfinite(c) else pg.mkColor("#777")
            self.plot([0, 1], [_depth(i, r.layers_a), _depth(j, r.layers_b)], pen=pg.mkPen(color, width=2))
        for x, layers in ((0, r.layers_a), (1, r.layers_b)):
            ys = np.array([_depth(k, layers) for k in range(layers)])
            self.plot(np.full(layers, x), ys, pen=None, symbol="o", symbolSize=9, symbolBrush="w")
            step = max(1, layers // 16)
            for k in range(0, layers, step):
                label = pg.TextItem(str(k), anchor=(1.2, 0.5) if x == 0 else (-0.2, 0.5), color="#dddddd")
                label.setPos(x, ys[k])
                self.addItem(label)
        item.getAxis("bottom").setTicks([[(0, f"{short_name(r.model_a)} ({r.layers_a} layers)"),
                                          (1, f"{short_name(r.model_b)} ({r.layers_b} layers)")]])
        self.setXRange(-0.3, 1.3, padding=0)
        self.setYRange(-0.05, 1.05, padding=0)
        item.setTitle(f"Line colour: cosine of the matched layers ({low:.3f} dark, {high:.3f} bright)")
