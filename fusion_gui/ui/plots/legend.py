"""A legend in its own strip above the plot area: inside the area it would hide the curves it names."""

from __future__ import annotations

import pyqtgraph as pg

TITLE_ROW = 0  # the PlotItem layout's title row; the plots here have no title
GAP = 4  # pixels between the legend strip and the plot area


class StripLegend(pg.LegendItem):
    """Entries side by side above the plot, wrapping into more rows when the plot is narrow."""

    def __init__(self, plot: pg.PlotItem, label_text_size: str = "9pt"):
        super().__init__(labelTextSize=label_text_size, horSpacing=14)
        self._plot = plot
        self.setParentItem(plot)
        self.anchor(itemPos=(0.5, 0), parentPos=(0.5, 0), offset=(0, 2))
        plot.legend = self  # plot(name=...) adds its curve here, as with addLegend()
        plot.geometryChanged.connect(self._fit)

    def addItem(self, item, name) -> None:  # noqa: N802 - pyqtgraph's name
        super().addItem(item, name)
        self._fit()

    def removeItem(self, item) -> None:  # noqa: N802
        super().removeItem(item)
        self._fit()

    def clear(self) -> None:
        super().clear()
        self._fit()

    def _fit(self) -> None:
        """As many columns as fit the plot's width; the title row grows to the legend's height."""
        if not self.items:
            self._plot.layout.setRowFixedHeight(TITLE_ROW, 0)
            return
        widest = max(sample.boundingRect().width() + label.boundingRect().width()
                     for sample, label in self.items) + 2 * self.layout.horizontalSpacing()
        room = self._plot.width() or 1.0
        self.setColumnCount(max(1, min(len(self.items), int(room // widest))))
        self.updateSize()
        self._plot.layout.setRowFixedHeight(TITLE_ROW, self.height() + GAP)
