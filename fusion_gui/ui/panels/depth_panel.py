"""Different depths: two models with different layer counts (depth up-scaled, pruned) compared layer by
layer at the same relative depth, as a job; the mapping drawn as lines between two layer columns and
listed in a table with each matched pair's cosine and relative difference. "From the Merge view" takes
its base as A and its next model as B."""

from __future__ import annotations

import math

from PySide6.QtWidgets import (QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from fusion_gui.events import DepthMatch
from fusion_gui.formatting import format_duration
from fusion_gui.session.inspect import InspectState
from fusion_gui.ui.jobs import JobRunner
from fusion_gui.ui.panels.compare_panel import ModelPicker
from fusion_gui.ui.panels.result_export import ExportsResult
from fusion_gui.ui.plots.depth_plot import DepthMapPlot


def depth_job(model_a: str, model_b: str, token):
    from fusion_gui.engine.inspect.depth import depth_match

    return depth_match(model_a, model_b, cancel=token)


class DepthPanel(ExportsResult, QWidget):
    export_stem = "depth-match"

    def __init__(self, state: InspectState, known_models=lambda: [], merge_session=None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.state, self.known_models, self.merge_session = state, known_models, merge_session
        self.result: DepthMatch | None = None
        self.model_a = ModelPicker("Model A (e.g. the original)")
        self.model_b = ModelPicker("Model B (e.g. depth up-scaled or pruned)")
        self.start_button = QPushButton("Match by depth")
        self.from_merge_button = QPushButton("From the Merge view")
        self.from_merge_button.setToolTip("The Merge view's base as A, its next model as B")
        self.from_merge_button.setEnabled(merge_session is not None)
        self.cancel_button = QPushButton("Cancel")
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.status_label = QLabel("Two models of different layer counts: each layer of A is compared with "
                                   "the layer of B at the same relative depth.")
        self.status_label.setWordWrap(True)
        self.csv_button = QPushButton("Save CSV…")
        self.png_button = QPushButton("Save PNG…")
        self.plot = DepthMapPlot()
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["layer of A", "layer of B", "cosine", "‖B − A‖ / ‖A‖"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        form = QFormLayout()
        form.addRow("Model A", self.model_a)
        form.addRow("Model B", self.model_b)
        from_merge = QHBoxLayout()
        from_merge.addWidget(self.from_merge_button)
        from_merge.addStretch(1)
        form.addRow("", from_merge)
        controls = QHBoxLayout()
        for w in (self.start_button, self.cancel_button):
            controls.addWidget(w)
        controls.addWidget(self.progress_bar, 1)
        controls.addWidget(self.png_button)
        controls.addWidget(self.csv_button)
        split = QSplitter()
        split.addWidget(self.plot)
        split.addWidget(self.table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(controls)
        lay.addWidget(self.status_label)
        lay.addWidget(split, 1)
        self.runner = JobRunner(self, start_button=self.start_button, cancel_button=self.cancel_button,
                                progress_bar=self.progress_bar, status_label=self.status_label,
                                handlers={}, on_finished=self._on_finished, on_done=self._enable_start,
                                failure_title="Matching by depth failed")
        self.start_button.clicked.connect(self.start)
        self.from_merge_button.clicked.connect(self.from_merge)
        self._connect_saving()
        for picker in (self.model_a, self.model_b):
            picker.combo.currentTextChanged.connect(
                lambda _: self.state.choose_depth_models(self.model_a.text(), self.model_b.text()))
        self.state.events.depth_a.connect(lambda ref: self.model_a.text() != ref and self.model_a.set_text(ref))
        self.state.events.depth_b.connect(lambda ref: self.model_b.text() != ref and self.model_b.set_text(ref))
        for signal in (self.state.events.depth_a, self.state.events.depth_b):
            signal.connect(lambda _: self._enable_start())
        self._set_saving(False)
        self._enable_start()

    def problem(self) -> str:
        return "" if self.state.depth_a and self.state.depth_b else "Pick two models to match by depth."

    def _enable_start(self) -> None:
        problem = self.problem()
        self.start_button.setEnabled(not problem and not self.runner.running)
        self.start_button.setToolTip(problem or "Compare each layer of A with B's at the same relative depth")

    def from_merge(self) -> bool:
        if self.merge_session is None or not self.state.depth_from_merge(self.merge_session.state):
            self.status_label.setText("The Merge view holds fewer than two models: add them there first.")
            return False
        return True

    def refresh_choices(self) -> None:
        refs = list(self.known_models())
        for picker in (self.model_a, self.model_b):
            picker.set_choices(refs)

    def start(self):
        a, b = self.state.depth_a, self.state.depth_b
        if self.problem():
            self.status_label.setText(self.problem())
            return None
        self._set_saving(False)
        return self.runner.start(lambda token: depth_job(a, b, token), "Matching layers…")

    def _on_finished(self, result: DepthMatch) -> str:
        self.result = result
        self.plot.show_match(result)
        self.table.setRowCount(len(result.mapping))
        for i, (j, c, d) in enumerate(zip(result.mapping, result.cosine, result.relative_diff)):
            cells = [str(i), str(j), "–" if math.isnan(c) else f"{c:.4f}", "–" if math.isnan(d) else f"{d:.4g}"]
            for col, text in enumerate(cells):
                self.table.setItem(i, col, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self._set_saving(True)
        return (f"{result.model_a}: {result.layers_a} layers, {result.model_b}: {result.layers_b}; matched in "
                f"{format_duration(result.seconds)}.")
