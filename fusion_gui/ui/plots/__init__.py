"""Live plot widgets: change per layer (line plot) and a metric heatmap (layers x tensor kinds)."""

from fusion_gui.ui.plots.heatmap import MetricHeatmap
from fusion_gui.ui.plots.layer_plot import LayerChangePlot

__all__ = ["LayerChangePlot", "MetricHeatmap"]
