"""Pictures of N models' changes: an N x N matrix (cosine or sign-conflict rate) with its values
written in the cells, and the dendrogram of the fine-tunes from the engine's scipy linkage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QFontMetrics, QTransform

from fusion_gui.ui.plots.color_scale import data_levels
from fusion_gui.ui.plots.empty_text import EmptyPlotText

EMPTY_DENDROGRAM = "The fine-tunes, clustered by how alike their changes are, appear here."


def short_name(ref: str) -> str:
    """A model's label on an axis: its folder name (or the repo id's last part)."""
    return Path(str(ref).rstrip("/")).name or str(ref)


class MatrixPlot(pg.PlotWidget):
    """An N x N matrix, row i and column i both model i (in the order given)."""

    def __init__(self, title: str, colormap: str, diverging: bool = False, fmt: str = "{:.2f}",
                 empty_text: str = "", parent=None):
        super().__init__(parent)
        self.fmt, self.diverging = fmt, diverging
        self.matrix = np.zeros((0, 0))
        item = self.getPlotItem()
        item.setTitle(title)
        item.invertY(True)
        item.setMouseEnabled(False, False)
        item.setMenuEnabled(False)
        item.hideButtons()
        self._image = pg.ImageItem(axisOrder="row-major")
        self._image.setTransform(QTransform().translate(-0.5, -0.5))
        self.addItem(self._image)
        self._bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=colormap, interactive=False, width=12)
        self._bar.setImageItem(self._image, insert_in=item)
        fm = QFontMetrics(self.font())
        self._bar.axis.setWidth(fm.horizontalAdvance("-0.035") + fm.height() + 16)
        self._bar.axis.enableAutoSIPrefix(False)
        self._cmap = pg.colormap.get(colormap)
        self._texts: list[pg.TextItem] = []
        for side in ("bottom", "left"):
            item.getAxis(side).enableAutoSIPrefix(False)
        self.empty = EmptyPlotText(self, empty_text, extras=[self._bar])

    def set_matrix(self, matrix: np.ndarray, labels: list[str], levels: tuple[float, float] | None = None) -> None:
        self.matrix = np.asarray(matrix, dtype=float)
        n = len(labels)
        for t in self._texts:
            self.removeItem(t)
        self._texts.clear()
        levels = levels or data_levels(self.matrix, self.diverging)
        self._image.setImage(self.matrix, autoLevels=False)
        self._bar.setLevels(levels)
        ticks = [(i, short_name(m)) for i, m in enumerate(labels)]
        self.getPlotItem().getAxis("bottom").setTicks([ticks])
        self.getPlotItem().getAxis("left").setTicks([ticks])
        if n <= 12:  # values in the cells while they fit
            for i in range(n):
                for j in range(n):
                    text = pg.TextItem(self.fmt.format(self.matrix[i, j]), anchor=(0.5, 0.5),
                                       color=self._text_color(self.matrix[i, j], levels))
                    text.setPos(j, i)
                    self.addItem(text)
                    self._texts.append(text)
        self.setXRange(-0.5, n - 0.5, padding=0)
        self.setYRange(-0.5, n - 0.5, padding=0)
        self.empty.show_text() if n == 0 else self.empty.hide_text()

    def _text_color(self, value: float, levels: tuple[float, float]) -> str:
        """Black on light cells, white on dark ones: the value stays legible on any colour."""
        low, high = levels
        cell = self._cmap.map(min(1.0, max(0.0, (value - low) / ((high - low) or 1.0))), mode="qcolor")
        return "k" if QColor(cell).lightnessF() > 0.6 else "w"

    def clear_matrix(self) -> None:
        self.set_matrix(np.zeros((0, 0)), [])


class DendrogramPlot(pg.PlotWidget):
    """Average-linkage dendrogram on 1 - cosine: models that join low are alike."""

    def __init__(self, parent=None):
        super().__init__(parent)
        item = self.getPlotItem()
        item.setTitle("Which fine-tunes are alike")
        item.setLabel("left", "1 − cosine where they join")
        item.setMouseEnabled(False, False)
        item.setMenuEnabled(False)
        item.hideButtons()
        item.getAxis("left").enableAutoSIPrefix(False)
        self.leaves: list[str] = []
        self.empty = EmptyPlotText(self, EMPTY_DENDROGRAM)

    def set_linkage(self, linkage: np.ndarray | None, labels: list[str], note: str = "") -> None:
        self.getPlotItem().clear()
        self.leaves = []
        if linkage is None:  # too few fine-tunes to cluster: the note says so where the tree would be
            self.empty.show_text(note or "No clustering.")
            return
        self.empty.hide_text()
        from scipy.cluster.hierarchy import dendrogram

        tree = dendrogram(linkage, no_plot=True, labels=[short_name(m) for m in labels])
        pen = pg.mkPen("#56B4E9", width=2)
        for xs, ys in zip(tree["icoord"], tree["dcoord"]):
            self.plot(np.asarray(xs) / 10 - 0.5, ys, pen=pen)  # scipy puts leaf k at x = 10k + 5
        self.leaves = list(tree["ivl"])
        self.getPlotItem().getAxis("bottom").setTicks([list(enumerate(self.leaves))])
        self.setXRange(-0.5, len(self.leaves) - 0.5)
        self.setYRange(0, max(1e-6, float(np.max(tree["dcoord"]))) * 1.05)
