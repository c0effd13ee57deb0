"""Spectral health per layer: the mean power-law alpha of each layer's weight matrices, one curve per
model (base, inputs, merged output), filled live as each matrix is fitted. The band from 2 to 6 is
what WeightWatcher calls well trained."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg

from fusion_gui.engine.inspect.spectral import SpectralTensor
from fusion_gui.ui.plots.empty_text import EmptyPlotText
from fusion_gui.ui.plots.layer_axis import LayerAxis
from fusion_gui.ui.plots.layer_plot import PALETTE
from fusion_gui.ui.plots.similarity_plots import short_name
from fusion_gui.ui.plots.throttle import RedrawThrottle

WELL_TRAINED = (2.0, 6.0)


class AlphaPlot(pg.PlotWidget):
    def __init__(self, parent=None):
        super().__init__(parent, axisItems={"bottom": LayerAxis("bottom")})
        item = self.getPlotItem()
        item.setLabel("bottom", "layer")
        item.setLabel("left", "alpha (layer mean)")
        item.showGrid(x=True, y=True, alpha=0.25)
        for side in ("bottom", "left"):
            item.getAxis(side).enableAutoSIPrefix(False)
        band = pg.LinearRegionItem(WELL_TRAINED, orientation="horizontal", movable=False,
                                   brush=pg.mkBrush(80, 160, 80, 40), pen=pg.mkPen(None))
        item.addItem(band, ignoreBounds=True)
        item.setTitle("green band: alpha 2 to 6, well trained (WeightWatcher's reading)", color="#aaaaaa", size="9pt")
        self.legend = item.addLegend(offset=(-10, 10))
        self._fits: dict[str, dict[int, list[float]]] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._throttle = RedrawThrottle(self._redraw, parent=self)
        self.empty = EmptyPlotText(self, "Each model's mean alpha per layer appears here, layer by layer as "
                                         "the matrices are fitted.", extras=[band])

    def reset(self) -> None:
        for curve in self._curves.values():
            self.getPlotItem().removeItem(curve)
            self.legend.removeItem(curve)
        self._curves.clear()
        self._fits.clear()
        self.empty.show_text()

    def add_fit(self, t: SpectralTensor) -> None:
        if t.layer is None or not math.isfinite(t.alpha):
            return
        self._fits.setdefault(t.model, {}).setdefault(t.layer, []).append(t.alpha)
        self._throttle.schedule()

    def flush(self) -> None:
        self._throttle.flush()

    def layer_means(self, model: str) -> dict[int, float]:
        return {k: float(np.mean(v)) for k, v in sorted(self._fits.get(model, {}).items())}

    def _redraw(self) -> None:
        if self._fits:
            self.empty.hide_text()
        for model in self._fits:
            if model not in self._curves:
                color = PALETTE[len(self._curves) % len(PALETTE)]
                self._curves[model] = self.plot([], [], name=short_name(model), pen=pg.mkPen(color, width=1.5),
                                                symbol="o", symbolSize=5, symbolBrush=color, symbolPen=None)
            means = self.layer_means(model)
            self._curves[model].setData(np.array(list(means), float), np.array(list(means.values())))
