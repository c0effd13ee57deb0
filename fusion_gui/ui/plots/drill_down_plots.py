"""The pictures of one tensor's drill-down: each model's change as a histogram (log scale), an image of
|change| by block norms with the row and column norms beside it, the singular value spectrum with the
ranks that keep 90/99% of the energy, the TIES/DARE/breadcrumbs mask preview, and a summary table."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QTransform
from PySide6.QtWidgets import (QComboBox, QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from fusion_gui.events import TensorDrillDown
from fusion_gui.ui.plots.layer_plot import PALETTE

METHODS = {"TIES": "ties", "DARE": "dare", "breadcrumbs": "breadcrumbs"}
COLUMNS = ["model", "‖Δ‖ / ‖base‖", "effective rank", "rank for 90%", "rank for 99%",
           "TIES keeps", "DARE keeps", "breadcrumbs keeps"]


def _rank(v: int | None) -> str:
    return "more than found" if v is None else str(v)


def _titled(title: str, widget: QWidget) -> QWidget:
    box = QWidget()
    lay = QVBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(2)
    label = QLabel(f"<b>{title}</b>")
    lay.addWidget(label)
    lay.addWidget(widget, 1)
    return box


def _box() -> QWidget:
    """A fixed share of the grid (its size ignores its content), so a plot built into one box later does
    not resize, and so repaint, the plots already in the others."""
    box = QWidget()
    box.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
    lay = QVBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    return box


def _plain_axes(plot: pg.PlotItem) -> None:
    for side in ("bottom", "left"):
        plot.getAxis(side).enableAutoSIPrefix(False)


def _image_item() -> pg.ImageItem:
    image = pg.ImageItem(axisOrder="row-major")
    image.setTransform(QTransform().translate(-0.5, -0.5))  # pixel centres on integers
    return image


class DrillDownPlots(QWidget):
    """Fed one TensorDrillDown at a time (show); the model and method boxes pick what the image,
    the spectrum's rank lines and the mask preview show."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: TensorDrillDown | None = None
        self.model_box = QComboBox()
        self.method_box = QComboBox()
        self.method_box.addItems(list(METHODS))
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.mask_label = QLabel()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        # the plots go into these boxes as they are built (see _builds)
        self._boxes = [_box() for _ in range(4)]
        self._boxes[3].layout().addWidget(self.mask_label)
        grid = QGridLayout()
        grid.addWidget(_titled("Histogram of each model's change", self._boxes[0]), 0, 0)
        grid.addWidget(_titled("|change| by block norms, with row and column norms", self._boxes[1]), 0, 1)
        grid.addWidget(_titled("Singular value spectrum of the change", self._boxes[2]), 1, 0)
        grid.addWidget(_titled("What the merge method keeps (per block)", self._boxes[3]), 1, 1)
        for i in range(2):
            grid.setRowStretch(i, 1)
            grid.setColumnStretch(i, 1)
        top = QHBoxLayout()
        top.addWidget(QLabel("Model"))
        top.addWidget(self.model_box, 1)
        top.addWidget(QLabel("Mask of"))
        top.addWidget(self.method_box)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.summary)
        lay.addLayout(grid, 1)
        lay.addWidget(self.table)
        self._hist_curves: list[pg.PlotDataItem] = []
        self._spectrum_curves: list[pg.PlotDataItem] = []
        # Making pyqtgraph's plots costs 15-40 ms each (menus, axes, the colour bar): ~0.3 s together,
        # so they are built one per event-loop turn too, before the first result is drawn.
        self._builds: list = [self._build_histogram, self._build_spectrum, self._build_image_view, self._build_col_plot,
                              self._build_image_plot, self._build_row_plot, self._build_mask_view,
                              self._build_mask_bar, self._place_mask_bar]
        self._draws: list = []
        self._stage_timer = QTimer(self, singleShot=True, interval=0)  # dies with the widget: no late call
        self._stage_timer.timeout.connect(self._next_stage)
        self.model_box.currentIndexChanged.connect(self._redraw_model)
        self.method_box.currentIndexChanged.connect(self._redraw_model)
        self._stage_timer.start()

    def _build_histogram(self) -> None:
        self.histogram = pg.PlotWidget()
        self.histogram.setLabel("bottom", "change (model − base)")
        self.histogram.setLabel("left", "log10(1 + count)")
        self.histogram.addLegend(offset=(-10, 10))
        _plain_axes(self.histogram.getPlotItem())
        self._boxes[0].layout().addWidget(self.histogram)

    def _build_spectrum(self) -> None:
        self.spectrum = pg.PlotWidget()
        self.spectrum.setLogMode(y=True)
        self.spectrum.setLabel("bottom", "singular value index")
        self.spectrum.setLabel("left", "singular value of the change")
        self._rank_lines = [pg.InfiniteLine(angle=90, pen=pg.mkPen(c, style=Qt.PenStyle.DashLine), label=t,
                                            labelOpts={"position": 0.9, "color": c})
                            for c, t in (("#bbbbbb", "90%"), ("#ffffff", "99%"))]
        for line in self._rank_lines:
            line.setVisible(False)
            self.spectrum.addItem(line, ignoreBounds=True)
        _plain_axes(self.spectrum.getPlotItem())
        self._boxes[2].layout().addWidget(self.spectrum)

    def _build_image_view(self) -> None:
        """|change| image with column norms above it and row norms to its right, sharing axes."""
        self.image_view = pg.GraphicsLayoutWidget()
        self._boxes[1].layout().addWidget(self.image_view)

    def _build_col_plot(self) -> None:
        self._cols = self.image_view.addPlot(row=0, col=0)
        self._cols.setLabel("left", "‖col‖")
        self._cols.getAxis("left").setStyle(showValues=False)
        self._col_curve = self._cols.plot([], [], pen=pg.mkPen(PALETTE[1], width=1.5))

    def _build_image_plot(self) -> None:
        self._img_plot = self.image_view.addPlot(row=1, col=0)
        self.image_view.ci.layout.setRowStretchFactor(1, 4)
        self._image = _image_item()
        self._image.setColorMap(pg.colormap.get("viridis"))
        self._img_plot.addItem(self._image)
        self._img_plot.invertY(True)
        self._img_plot.setLabel("bottom", "column block")
        self._img_plot.setLabel("left", "row block")
        self._cols.setXLink(self._img_plot)

    def _build_row_plot(self) -> None:
        self._rows = self.image_view.addPlot(row=1, col=1)
        self.image_view.ci.layout.setColumnStretchFactor(0, 4)
        self._rows.setYLink(self._img_plot)
        self._rows.invertY(True)
        self._rows.setLabel("bottom", "‖row‖")
        self._rows.getAxis("bottom").setStyle(showValues=False)  # a narrow strip: the shape, not the numbers
        self._row_curve = self._rows.plot([], [], pen=pg.mkPen(PALETTE[0], width=1.5))
        for plot in (self._cols, self._img_plot, self._rows):
            plot.setMenuEnabled(False)
            _plain_axes(plot)

    def _build_mask_view(self) -> None:
        self.mask_view = pg.PlotWidget()
        self._mask = _image_item()
        self._mask.setColorMap(pg.colormap.get("CET-L1"))
        self.mask_view.addItem(self._mask)
        self.mask_view.getPlotItem().invertY(True)
        self._boxes[3].layout().insertWidget(0, self.mask_view, 1)

    def _build_mask_bar(self) -> None:
        self._mask_bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap="CET-L1", interactive=False, width=12)

    def _place_mask_bar(self) -> None:
        self._mask_bar.setImageItem(self._mask, insert_in=self.mask_view.getPlotItem())
        self._mask_bar.axis.setLabel("fraction kept")

    @property
    def pending(self) -> bool:
        """Plots still to build or results still to draw."""
        return bool(self._builds or self._draws)

    def clear(self) -> None:
        self.result = None
        self._draws = []
        self.table.setRowCount(0)
        self.summary.setText("")
        self.mask_label.setText("")
        if self._builds:  # nothing has been drawn into plots still being built
            return
        for curve in self._hist_curves + self._spectrum_curves:
            curve.setData([], [])
        self.histogram.getPlotItem().legend.clear()
        for line in self._rank_lines:
            line.setVisible(False)
        self._image.clear()
        self._mask.clear()
        self._col_curve.setData([], [])
        self._row_curve.setData([], [])

    def show_result(self, result: TensorDrillDown) -> None:
        """Draw `result` in stages, one plot per turn of the event loop, so the window repaints and
        takes clicks between them (drawing everything at once held the GUI thread for up to a second)."""
        self.clear()
        self.result = result
        self._draws = [self._draw_summary, self._draw_histograms, self._draw_spectra, self._redraw_model]
        self._stage_timer.start()

    def finish_drawing(self) -> None:
        """Build and draw what is still pending now (tests, exports)."""
        while self.pending:
            self._run_stage()

    def _run_stage(self) -> None:
        (self._builds or self._draws).pop(0)()

    def _next_stage(self) -> None:
        if self.pending:
            self._run_stage()
        if self.pending:
            self._stage_timer.start()

    def _curve(self, curves: list, plot: pg.PlotWidget, i: int) -> pg.PlotDataItem:
        """The i-th curve of a plot, made once and reused (adding items to a plot is the slow part)."""
        while len(curves) <= i:
            curves.append(plot.plot([], []))
        return curves[i]

    def _draw_summary(self) -> None:
        result = self.result
        self._fill_table(result)
        agree = ("" if result.sign_agreement is None
                 else f" · signs agree on {result.sign_agreement:.1%} of elements across the models")
        shape = " × ".join(map(str, result.shape))
        block = " × ".join(map(str, result.block))
        self.summary.setText(
            f"<b>{result.name}</b> [{shape}] · change from {result.base_model}{agree} · spectrum {result.svd}"
            f" · image pixel = {block} elements · masks at density {result.density:g}"
            f"{' · from the cache' if result.cached else ''}")
        self.model_box.blockSignals(True)
        self.model_box.clear()
        self.model_box.addItems(list(result.models))
        self.model_box.blockSignals(False)

    def _draw_histograms(self) -> None:
        result = self.result
        legend = self.histogram.getPlotItem().legend
        for i, c in enumerate(result.changes):
            curve = self._curve(self._hist_curves, self.histogram, i)
            curve.setPen(pg.mkPen(PALETTE[i % len(PALETTE)], width=1.5))
            curve.setData(result.bin_edges, c.log_counts, stepMode="center")
            legend.addItem(curve, c.model)
        centres = (result.bin_edges[:-1] + result.bin_edges[1:]) / 2
        self.histogram.setXRange(float(centres[0]), float(centres[-1]), padding=0.02)

    def _draw_spectra(self) -> None:
        for i, c in enumerate(self.result.changes):
            color = PALETTE[i % len(PALETTE)]
            values = np.clip(np.asarray(c.spectrum, dtype=float), 1e-12, None)
            curve = self._curve(self._spectrum_curves, self.spectrum, i)
            curve.setPen(pg.mkPen(color, width=1.5))
            curve.setSymbol("o" if len(values) <= 64 else None)
            curve.setSymbolSize(4)
            curve.setSymbolBrush(color)
            curve.setSymbolPen(None)
            curve.setData(np.arange(1, len(values) + 1), values)

    def _fill_table(self, result: TensorDrillDown) -> None:
        self.table.setRowCount(len(result.changes))
        for row, c in enumerate(result.changes):
            cells = [c.model, f"{c.relative_change:.4g}", f"{c.effective_rank:.1f}", _rank(c.rank_90),
                     _rank(c.rank_99)] + [f"{c.kept.get(m, float('nan')):.1%}" for m in METHODS.values()]
            for col, text in enumerate(cells):
                self.table.setItem(row, col, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        rows = sum(self.table.rowHeight(i) for i in range(self.table.rowCount()))
        self.table.setFixedHeight(self.table.horizontalHeader().height() + rows + 4)

    def _redraw_model(self, *_args) -> None:
        if self.result is None or not self.result.changes or self._builds:
            return
        c = self.result.changes[max(0, self.model_box.currentIndex())]
        self._image.setImage(c.image, autoLevels=True)
        self._col_curve.setData(np.arange(len(c.col_norms)), c.col_norms)
        self._row_curve.setData(c.row_norms, np.arange(len(c.row_norms)))
        self._img_plot.autoRange(padding=0)
        for line, rank in zip(self._rank_lines, (c.rank_90, c.rank_99)):
            line.setVisible(rank is not None)
            if rank is not None:
                line.setPos(rank)
        method = METHODS[self.method_box.currentText()]
        mask = c.masks.get(method)
        if mask is not None:
            self._mask.setImage(mask, autoLevels=False, levels=(0.0, 1.0))
            self.mask_view.getPlotItem().autoRange(padding=0)
        kept = c.kept.get(method)
        self.mask_label.setText(
            f"{self.method_box.currentText()} at density {self.result.density:g} keeps "
            f"{kept:.1%} of {c.model}'s elements (dark: dropped)." if kept is not None else "")

    def rank_line_positions(self) -> list[float | None]:
        """Where the 90% and 99% lines stand on the spectrum (None: hidden)."""
        return [line.value() if line.isVisible() else None for line in self._rank_lines]

    def save_png(self, path) -> None:
        self.finish_drawing()
        self.grab().save(str(path))
