"""Live plots of a search, drawn from the SearchSession: score per trial with the best so far, a
heatmap of a 2-D grid, the Pareto front of two objectives, and the best candidate's parameters as
per-layer curves. Each plot keeps its items and only sets their data, at most ~20 times a second
(RedrawThrottle): a search of hundreds of trials never rebuilds a plot. Clicking a point emits
`trial_clicked(number)`."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QTabWidget, QWidget

from fusion_gui.session.search import SearchSession, param_curves
from fusion_gui.ui.plots.layer_plot import PALETTE
from fusion_gui.ui.plots.throttle import RedrawThrottle

FRONT_COLOR, OTHER_COLOR, BEST_COLOR = "#D55E00", "#9aa5b1", "#009E73"


def _plot(title: str, bottom: str, left: str) -> pg.PlotWidget:
    widget = pg.PlotWidget()
    widget.setBackground("w")
    item = widget.getPlotItem()
    item.setTitle(title, size="9pt")
    item.setLabel("bottom", bottom)
    item.setLabel("left", left)
    item.showGrid(x=True, y=True, alpha=0.25)
    for side in ("left", "bottom"):
        item.getAxis(side).enableAutoSIPrefix(False)
    return widget


class TrialAxis(pg.AxisItem):
    """Trial numbers are whole: ticks between them stay unlabelled."""

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        return [str(int(round(v))) if abs(v - round(v)) < 1e-9 else "" for v in values]


class SearchPlots(QTabWidget):
    trial_clicked = Signal(int)

    def __init__(self, session: SearchSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self._throttle = RedrawThrottle(self._redraw, parent=self)
        self._best_shown: int | None = None

        # one plot per objective, stacked: a perplexity near 90 and an accuracy near 0.5 share no axis
        self.scores_plot = pg.GraphicsLayoutWidget()
        self.scores_plot.setBackground("w")
        self._score_names: list[str] = []
        self._dots: list[pg.ScatterPlotItem] = []
        self._best_lines: list[pg.PlotDataItem] = []
        self.grid_plot = _plot("Score over the grid (first objective)", "", "")
        self._image = pg.ImageItem()
        self.grid_plot.addItem(self._image)
        self._color_bar = pg.ColorBarItem(colorMap=pg.colormap.get("viridis"), interactive=False, width=14)
        self._color_bar.setImageItem(self._image, insert_in=self.grid_plot.getPlotItem())
        self._grid_line = pg.PlotDataItem(pen=pg.mkPen(PALETTE[0], width=2))
        self.grid_plot.addItem(self._grid_line)
        self._grid_dots = pg.ScatterPlotItem(size=7, pen=pg.mkPen("w"), brush=pg.mkBrush(0, 0, 0, 60))
        self._grid_dots.sigClicked.connect(self._clicked)
        self.grid_plot.addItem(self._grid_dots)
        self.pareto_plot = _plot("Pareto front (orange): no other trial beats these on both objectives", "", "")
        self._all_points = pg.ScatterPlotItem(size=7, pen=None, brush=pg.mkBrush(OTHER_COLOR))
        self._front_line = pg.PlotDataItem(pen=pg.mkPen(FRONT_COLOR, width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine))
        self._front_points = pg.ScatterPlotItem(size=10, pen=pg.mkPen("k"), brush=pg.mkBrush(FRONT_COLOR))
        for item in (self._all_points, self._front_line, self._front_points):
            self.pareto_plot.addItem(item)
        for scatter in (self._all_points, self._front_points):
            scatter.sigClicked.connect(self._clicked)
        self.params_plot = _plot("Best candidate's parameters across the layer groups",
                                 "layer group (first layers on the left)", "value")
        self.params_plot.addLegend(offset=(-10, 10), labelTextSize="8pt")
        self._param_curves: dict[str, pg.PlotDataItem] = {}

        self.addTab(self.scores_plot, "Scores")
        self.addTab(self.grid_plot, "Grid")
        self.addTab(self.pareto_plot, "Pareto front")
        self.addTab(self.params_plot, "Best parameters")
        session.trials_added.connect(lambda _rows: self._throttle.schedule())
        session.trials_cleared.connect(self.reset)
        session.settings_changed.connect(lambda _origin: self._fit_tabs())
        self._fit_tabs()

    # --- shape -----------------------------------------------------------------------------
    def _fit_tabs(self) -> None:
        """The heatmap is for a 2-D grid, the front for two objectives; the others always."""
        objectives = self.session.objectives or ["score"]
        self.setTabVisible(1, self.session.settings.get("sampler") == "grid")
        self.setTabVisible(2, len(objectives) >= 2 and self.session.settings.get("combine") == "pareto")
        if len(objectives) >= 2:
            self.pareto_plot.setLabel("bottom", objectives[0])
            self.pareto_plot.setLabel("left", objectives[1])
        if objectives != self._score_names:  # rare: the objectives changed, not a trial
            self._build_score_plots(objectives)
        self._throttle.schedule()

    def _build_score_plots(self, objectives: list[str]) -> None:
        self.scores_plot.clear()
        self._score_names, self._dots, self._best_lines = list(objectives), [], []
        first = None
        for row, name in enumerate(objectives):
            color = PALETTE[row % len(PALETTE)]
            plot = self.scores_plot.addPlot(row=row, col=0, axisItems={"bottom": TrialAxis("bottom")})
            plot.setTitle(f"{name} per trial (dots) and best so far (line)", size="9pt")
            plot.setLabel("left", name)
            plot.setLabel("bottom", "trial")
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.getAxis("left").setWidth(56)
            for side in ("left", "bottom"):
                plot.getAxis(side).enableAutoSIPrefix(False)
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            dots = pg.ScatterPlotItem(size=7, pen=None, brush=pg.mkBrush(color))
            dots.sigClicked.connect(self._clicked)
            line = pg.PlotDataItem(pen=pg.mkPen(color, width=2), stepMode=None)
            plot.addItem(dots)
            plot.addItem(line)
            self._dots.append(dots)
            self._best_lines.append(line)

    def reset(self) -> None:
        for item in (*self._dots, *self._best_lines, self._all_points, self._front_points, self._front_line,
                     self._grid_dots, self._grid_line):
            item.setData([], [])
        self._image.clear()
        for curve in self._param_curves.values():
            curve.setData([], [])
        self._best_shown = None

    def flush(self) -> None:
        self._throttle.flush()

    # --- drawing ---------------------------------------------------------------------------
    def _redraw(self) -> None:
        trials = [t for t in self.session.ordered() if t.done]
        for k, (dots, line) in enumerate(zip(self._dots, self._best_lines)):
            rows = [t for t in trials if k < len(t.scores)]
            dots.setData([t.number for t in rows], [t.scores[k] for t in rows], data=[t.number for t in rows])
            best = self.session.best_so_far(k) if k < len(self.session.objectives) else []
            line.setData([n for n, _ in best], [v for _, v in best])
        if self.isTabVisible(1):
            self._draw_grid(trials)
        if self.isTabVisible(2):
            self._draw_front(trials)
        self._draw_best_params()

    def _grid_axis(self, key: str) -> list[float]:
        """The grid's values along one dimension, from the settings (the points not tried yet stay empty)."""
        from fusion_gui.session.merge import find_method

        name = key.split("/", 1)[0]
        entry = next((t for t in self.session.settings.get("tune", []) if t.get("name") == name), None)
        method = find_method(self.session.settings.get("method"))
        spec = method.param(name) if method is not None and entry is not None else None
        if entry is None or spec is None:
            return []
        low = max(entry["low"], spec.minimum) if spec.minimum is not None else entry["low"]
        high = min(entry["high"], spec.maximum) if spec.maximum is not None else entry["high"]
        steps = int(self.session.settings.get("grid_steps") or 2)
        return [low + (high - low) * k / (steps - 1) for k in range(steps)]

    def _draw_grid(self, trials) -> None:
        """A 1-D grid: score against the value; a 2-D grid: a heatmap of the first objective."""
        keys = self.session.param_keys()[:2]
        if not keys:
            return
        rows = [t for t in trials if all(k in t.params for k in keys)]
        name = (self.session.objectives or ["score"])[0]
        self.grid_plot.setLabel("bottom", keys[0])
        if len(keys) == 1:
            rows.sort(key=lambda t: t.params[keys[0]])
            self._grid_line.setData([t.params[keys[0]] for t in rows], [t.scores[0] for t in rows])
            self._grid_dots.setData([t.params[keys[0]] for t in rows], [t.scores[0] for t in rows],
                                    data=[t.number for t in rows])
            self.grid_plot.setLabel("left", name)
            self.grid_plot.setTitle(f"{name} over the grid", size="9pt")
            return
        xs, ys = self._grid_axis(keys[0]), self._grid_axis(keys[1])
        if not rows or len(xs) < 2 or len(ys) < 2:
            return
        image = np.full((len(xs), len(ys)), np.nan)
        for t in rows:
            i = int(np.argmin([abs(x - t.params[keys[0]]) for x in xs]))
            j = int(np.argmin([abs(y - t.params[keys[1]]) for y in ys]))
            image[i, j] = t.scores[0]
        dx, dy = xs[1] - xs[0], ys[1] - ys[0]
        finite = image[np.isfinite(image)]
        levels = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if levels[1] <= levels[0]:
            levels = (levels[0], levels[0] + 1e-9)
        self._image.setImage(image, autoLevels=False)
        self._color_bar.setLevels(levels)
        self._image.setRect(xs[0] - dx / 2, ys[0] - dy / 2, dx * len(xs), dy * len(ys))
        self._grid_dots.setData([t.params[keys[0]] for t in rows], [t.params[keys[1]] for t in rows],
                                data=[t.number for t in rows])
        self.grid_plot.setLabel("left", keys[1])
        self.grid_plot.setTitle(f"{name} over the 2-D grid (colour bar on the right; empty: not tried yet)",
                                size="9pt")

    def _draw_front(self, trials) -> None:
        rows = [t for t in trials if len(t.scores) >= 2]
        self._all_points.setData([t.scores[0] for t in rows], [t.scores[1] for t in rows],
                                 data=[t.number for t in rows])
        front = [self.session.trials[n] for n in self.session.front()]
        xs, ys = [t.scores[0] for t in front], [t.scores[1] for t in front]
        self._front_points.setData(xs, ys, data=[t.number for t in front])
        self._front_line.setData(xs, ys)

    def _draw_best_params(self) -> None:
        best = self.session.best()
        if best is None or best.number == self._best_shown:
            return
        self._best_shown = best.number
        curves = param_curves(best.params)
        width = max((len(v) for v in curves.values()), default=1)
        for label, values in curves.items():
            xs = np.arange(len(values), dtype=float) if len(values) > 1 else np.array([0.0, max(1, width - 1)])
            ys = values if len(values) > 1 else values * 2
            if label not in self._param_curves:
                color = PALETTE[len(self._param_curves) % len(PALETTE)]
                self._param_curves[label] = self.params_plot.plot(
                    [], [], pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5, symbolBrush=color, name=label)
            self._param_curves[label].setData(xs, ys)
        for label, curve in self._param_curves.items():
            if label not in curves:
                curve.setData([], [])
        self.params_plot.setTitle(f"Best candidate's parameters across the layer groups (trial {best.number})",
                                  size="9pt")

    def _clicked(self, _item, points, *_):
        if len(points):
            self.trial_clicked.emit(int(points[0].data()))

    # --- for tests -------------------------------------------------------------------------
    def point_counts(self) -> dict[str, int]:
        return {"scores": sum(len(d.data) for d in self._dots), "front": len(self._front_points.data),
                "pareto_all": len(self._all_points.data), "grid": len(self._grid_dots.data),
                "param_curves": sum(1 for c in self._param_curves.values() if c.xData is not None and len(c.xData))}
