"""The per-layer plot and the heatmap, in tabs or side by side, each with Save PNG / Save CSV."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout, QPushButton, QSplitter, QTabWidget, QVBoxLayout, QWidget,
)

from fusion_gui.events import LayerMetrics, PlanSummary, TensorMetrics
from fusion_gui.ui.plots import LayerChangePlot, MetricHeatmap
from fusion_gui.ui.widgets.file_dialogs import ask_save_file


def _with_save_buttons(plot: QWidget, stem: str, parent: QWidget) -> QWidget:
    page = QWidget(parent)
    buttons = QHBoxLayout()
    buttons.addStretch(1)
    for label, suffix, save in (("Save PNG…", "png", plot.save_png), ("Save CSV…", "csv", plot.save_csv)):
        button = QPushButton(label)
        button.clicked.connect(lambda _=False, s=save, x=suffix: _ask_and_save(page, s, f"{stem}.{x}", x))
        buttons.addWidget(button)
    layout = QVBoxLayout(page)
    layout.setContentsMargins(4, 4, 4, 4)
    layout.addWidget(plot, 1)
    layout.addLayout(buttons)
    return page


def _ask_and_save(parent: QWidget, save, default_name: str, suffix: str) -> None:
    path = ask_save_file(parent, "Save", default_name, f"{suffix.upper()} (*.{suffix})")
    if path:
        save(path)


class _FeedsPlots:
    """LayerMetrics go to the line plot, TensorMetrics to the heatmap; the rest is ignored."""

    layer_plot: LayerChangePlot
    heatmap: MetricHeatmap

    def reset(self, models: tuple[str, ...] = ()) -> None:
        self.layer_plot.reset(models)
        self.heatmap.reset()

    _ROUTES = {PlanSummary: "_on_plan", LayerMetrics: "_on_layer", TensorMetrics: "_on_tensor"}  # by event type

    def handle_event(self, event: object) -> None:
        route = self._ROUTES.get(type(event))
        if route is not None:
            getattr(self, route)(event)

    def _on_plan(self, event: PlanSummary) -> None:
        self.layer_plot.set_layer_count(event.num_layers)

    def _on_layer(self, event: LayerMetrics) -> None:
        self.layer_plot.add_layer(event)

    def _on_tensor(self, event: TensorMetrics) -> None:
        self.heatmap.add_tensor(event)

    def flush(self) -> None:
        self.layer_plot.flush()
        self.heatmap.flush()

    def _connect_clicks(self) -> None:
        """A heatmap cell or a layer point asks for its tensors' drill-down (tensors_clicked)."""
        self.heatmap.cell_clicked.connect(self.tensors_clicked.emit)
        self.layer_plot.layer_clicked.connect(
            lambda layer: self.tensors_clicked.emit(self.heatmap.layer_tensors(layer)))


class PlotTabs(QTabWidget, _FeedsPlots):
    """The plots as tabs (the Merge tab adds its log and recipe beside them)."""

    tensors_clicked = Signal(list)  # tensor names to drill down into

    def __init__(self, show_result: bool = True, stem: str = "merge", parent: QWidget | None = None):
        super().__init__(parent)
        self.layer_plot = LayerChangePlot()
        self.layer_plot.set_show_result(show_result)
        self.heatmap = MetricHeatmap(for_merge=show_result)  # no result: no result metrics
        self.addTab(_with_save_buttons(self.layer_plot, f"{stem}-layers", self), "Change per layer")
        self.addTab(_with_save_buttons(self.heatmap, f"{stem}-heatmap", self), "Heatmap")
        self._connect_clicks()


class PlotsSideBySide(QSplitter, _FeedsPlots):
    """The plots next to each other, for a tab with room to spare (Compare)."""

    tensors_clicked = Signal(list)  # tensor names to drill down into

    def __init__(self, show_result: bool = False, stem: str = "compare", parent: QWidget | None = None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.layer_plot = LayerChangePlot()
        self.layer_plot.set_show_result(show_result)
        self.heatmap = MetricHeatmap(for_merge=show_result)  # no result: no result metrics
        self.addWidget(_with_save_buttons(self.layer_plot, f"{stem}-layers", self))
        self.addWidget(_with_save_buttons(self.heatmap, f"{stem}-heatmap", self))
        self.setSizes([1, 1])
        self._connect_clicks()
