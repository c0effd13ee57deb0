"""Grouped bars: one group per score (task/metric), one bar per model, with 95% confidence intervals."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from fusion_gui.session.score_compare import Comparison

# distinct, colour-blind friendly (Okabe-Ito); the first model (the merge) gets the strongest
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def model_colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


class ScoreBars(pg.PlotWidget):
    def __init__(self, parent=None):
        super().__init__(parent, background="w")
        self.setMinimumHeight(150)
        self.getPlotItem().showGrid(y=True, alpha=0.3)
        self.setLabel("left", "score")
        self.setMouseEnabled(x=False, y=False)
        self.bars: list[pg.BarGraphItem] = []
        self.error_bars: list[pg.ErrorBarItem] = []
        self.legend = self.getPlotItem().addLegend(offset=(10, 2), labelTextColor="#222222")

    def set_comparison(self, comparison: Comparison) -> None:
        self.clear()
        self.legend.clear()
        self.bars, self.error_bars = [], []
        metrics = comparison.chart_metrics()
        if not metrics:
            return
        count = max(1, len(comparison.models))
        width = 0.8 / count
        centres = np.arange(len(metrics), dtype=float)
        for i, model in enumerate(comparison.models):
            xs = centres - 0.4 + width * (i + 0.5)
            values = [comparison.value(model, m) for m in metrics]
            have = [j for j, v in enumerate(values) if v is not None]
            if not have:
                continue
            x, y = xs[have], np.array([values[j] for j in have])
            bar = pg.BarGraphItem(x=x, height=y, width=width * 0.9, brush=model_colour(i), pen=None, name=model)
            self.addItem(bar)  # named: the legend lists it
            self.bars.append(bar)
            spans = [comparison.interval(model, metrics[j]) for j in have]
            with_ci = [k for k, s in enumerate(spans) if s is not None]
            if with_ci:
                top = np.array([spans[k][1] - y[k] for k in with_ci])
                bottom = np.array([y[k] - spans[k][0] for k in with_ci])
                errors = pg.ErrorBarItem(x=x[with_ci], y=y[with_ci], top=top, bottom=bottom, beam=width * 0.3,
                                         pen=pg.mkPen("#333333", width=1))
                self.addItem(errors)
                self.error_bars.append(errors)
        self.getPlotItem().getAxis("bottom").setTicks([list(zip(centres, metrics))])
        self.setXRange(-0.6, len(metrics) - 0.4, padding=0)
        self.legend.setColumnCount(min(len(comparison.models), 4))  # one row above the bars
        self.setYRange(0, 1.18, padding=0)  # headroom for the legend
