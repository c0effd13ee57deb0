"""A radar of the scores when there are three or more: one closed polygon per model, 0 at the centre,
1 on the rim, one spoke per score."""

from __future__ import annotations

import math

import pyqtgraph as pg

from fusion_gui.session.score_compare import Comparison
from fusion_gui.ui.plots.score_bars import model_colour

MIN_SPOKES = 3


def spoke_angles(count: int) -> list[float]:
    """Clockwise from the top."""
    return [math.pi / 2 - 2 * math.pi * k / count for k in range(count)]


class ScoreRadar(pg.PlotWidget):
    def __init__(self, parent=None):
        super().__init__(parent, background="w")
        self.setMinimumSize(180, 150)
        self.setAspectLocked(True)
        self.hideAxis("left")
        self.hideAxis("bottom")
        self.setMouseEnabled(x=False, y=False)
        self.polygons: dict[str, pg.PlotDataItem] = {}
        self.legend = self.getPlotItem().addLegend(offset=(2, 2), labelTextColor="#222222")

    def set_comparison(self, comparison: Comparison) -> bool:
        """Draw; False (and hidden) when there are fewer than three scores to put on spokes."""
        self.clear()
        self.legend.clear()
        self.polygons = {}
        metrics = comparison.chart_metrics()
        if len(metrics) < MIN_SPOKES:
            self.setVisible(False)
            return False
        angles = spoke_angles(len(metrics))
        grid = pg.mkPen("#bbbbbb", width=1)
        for ring in (0.25, 0.5, 0.75, 1.0):
            xs = [ring * math.cos(a) for a in angles + angles[:1]]
            ys = [ring * math.sin(a) for a in angles + angles[:1]]
            self.plot(xs, ys, pen=grid)
        for angle, metric in zip(angles, metrics):
            self.plot([0, math.cos(angle)], [0, math.sin(angle)], pen=grid)
            anchor = (0.5 - 0.5 * math.cos(angle), 0.5 + 0.5 * math.sin(angle))  # text grows away from the centre
            label = pg.TextItem(metric, color="#333333", anchor=anchor)
            label.setPos(1.08 * math.cos(angle), 1.08 * math.sin(angle))
            self.addItem(label)
        for i, model in enumerate(comparison.models):
            values = [comparison.value(model, m) or 0.0 for m in metrics]
            xs = [v * math.cos(a) for v, a in zip(values, angles)]
            ys = [v * math.sin(a) for v, a in zip(values, angles)]
            self.polygons[model] = self.plot(xs + xs[:1], ys + ys[:1], pen=pg.mkPen(model_colour(i), width=2),
                                             symbol="o", symbolSize=5, symbolBrush=model_colour(i), name=model)
        self.setRange(xRange=(-2.3, 2.3), yRange=(-1.25, 1.25), padding=0)  # room for the labels
        self.setVisible(True)
        return True
