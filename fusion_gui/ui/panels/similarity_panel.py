"""Many models at once: pick N fine-tunes and their base; the similarity job (a JobRunner) streams one
tensor at a time and ends with the cosine matrix of their changes, the sign-conflict rates of every
pair (whole model or one layer group) and the dendrogram of the fine-tunes. "Merge these" fills the
Merge view through the MergeSession's intents; "From the Merge view" does the reverse (and an empty
view takes the Merge view's models when shown). "Compare the changes" stays disabled, its tooltip saying
why, until two fine-tunes and a base are set."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QSplitter, QVBoxLayout, QWidget)

from fusion_gui.events import Log, Progress, SimilarityResult
from fusion_gui.formatting import format_bytes, format_duration
from fusion_gui.session.inspect import WHOLE_MODEL, InspectState
from fusion_gui.ui.jobs import JobRunner
from fusion_gui.ui.panels.compare_panel import ModelPicker
from fusion_gui.ui.panels.model_list import ModelList, bind_list
from fusion_gui.ui.panels.result_export import ExportsResult
from fusion_gui.ui.plots.similarity_plots import DendrogramPlot, MatrixPlot


def similarity_job(models: list[str], base: str, token):
    """The generator the worker runs (a module function so tests and benchmarks can wrap it)."""
    from fusion_gui.engine.inspect.similarity import similarity

    return similarity(models, base, cancel=token)


class SimilarityPanel(ExportsResult, QWidget):
    export_stem = "similarity"
    message = Signal(str)
    merge_filled = Signal()  # "Merge these" wrote the Merge view: the window shows it

    def __init__(self, state: InspectState, merge_session=None, known_models=lambda: [],
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.state, self.merge_session, self.known_models = state, merge_session, known_models
        self.result: SimilarityResult | None = None
        self.models = ModelList("A fine-tune: a folder or a cached repo id")
        self.base = ModelPicker("The base they were fine-tuned from")
        self.start_button = QPushButton("Compare the changes")
        self.from_merge_button = QPushButton("From the Merge view")
        self.from_merge_button.setToolTip("The Merge view's base as the base, its other models as the fine-tunes")
        self.from_merge_button.setEnabled(merge_session is not None)
        self.cancel_button = QPushButton("Cancel")
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.status_label = QLabel("Pick two or more fine-tunes of one base: their changes are compared "
                                   "tensor by tensor (cosine, sign conflicts) and clustered.")
        self.status_label.setWordWrap(True)
        self.group_box = QComboBox()
        self.group_box.addItem(WHOLE_MODEL)
        self.merge_button = QPushButton("Merge these")
        self.merge_button.setToolTip("Put these models and this base into the Merge view")
        self.png_button, self.csv_button = QPushButton("Save PNG…"), QPushButton("Save CSV…")
        self.cosine_plot = MatrixPlot("Cosine of the changes", "CET-D1", diverging=True,
                                      empty_text="The cosine of each pair of fine-tunes' changes appears here.")
        self.conflict_plot = MatrixPlot("Sign conflicts (of elements both changed)", "viridis", fmt="{:.0%}",
                                        empty_text="How often each pair of fine-tunes changed an element in "
                                                   "opposite directions appears here.")
        self.dendrogram = DendrogramPlot()

        form = QFormLayout()
        form.addRow("Fine-tunes", self.models)
        form.addRow("Base", self.base)
        from_merge = QHBoxLayout()
        from_merge.addWidget(self.from_merge_button)
        from_merge.addStretch(1)
        form.addRow("", from_merge)
        controls = QHBoxLayout()
        controls.addWidget(self.start_button)
        controls.addWidget(self.cancel_button)
        controls.addWidget(self.progress_bar, 1)
        controls.addWidget(QLabel("Tensors"))
        controls.addWidget(self.group_box)
        controls.addWidget(self.merge_button)
        controls.addWidget(self.png_button)
        controls.addWidget(self.csv_button)
        self.plots = QSplitter()
        for plot in (self.cosine_plot, self.conflict_plot, self.dendrogram):
            plot.setMinimumSize(260, 240)
            self.plots.addWidget(plot)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(controls)
        lay.addWidget(self.status_label)
        lay.addWidget(self.plots, 1)

        self.runner = JobRunner(
            self, start_button=self.start_button, cancel_button=self.cancel_button,
            progress_bar=self.progress_bar, status_label=self.status_label,
            handlers={Progress: self._on_progress, Log: lambda e: self.message.emit(e.message)},
            on_finished=self._on_finished, on_done=self._enable_start,
            failure_title="Comparing the models failed")
        self.start_button.clicked.connect(self.start)
        self.from_merge_button.clicked.connect(self.from_merge)
        self.merge_button.clicked.connect(self.merge_these)
        self._connect_saving()
        self.models.add_requested.connect(self.state.add_model)
        self.models.remove_requested.connect(self.state.remove_model)
        bind_list(self.models, self.state.events.models, lambda: self.state.models)
        self.base.combo.currentTextChanged.connect(lambda text: self.state.set_base(text))
        self.state.events.base.connect(lambda ref: self.base.text() != ref and self.base.set_text(ref))
        self.group_box.currentTextChanged.connect(self.state.choose_group)
        self.state.events.group.connect(lambda _: self._draw())
        self.state.events.models.connect(lambda _: self._enable_start())
        self.state.events.base.connect(lambda _: self._enable_start())
        self._set_saving(False)
        self._enable_start()

    def _enable_start(self) -> None:
        """Start and "Merge these" only with two fine-tunes and a base; the tooltip says what is missing."""
        problem = self.state.problem()
        self.start_button.setEnabled(not problem and not self.runner.running)
        self.start_button.setToolTip(problem or "Compare the fine-tunes' changes from the base, tensor by tensor")
        self.merge_button.setEnabled(not problem and self.merge_session is not None)

    def from_merge(self) -> bool:
        """The Merge view's models here (its base as the base); a sentence when it holds none."""
        if self.merge_session is None or not self.state.similarity_from_merge(self.merge_session.state):
            self.status_label.setText("The Merge view holds no models yet: add some there first.")
            return False
        return True

    def refresh_choices(self) -> None:
        refs = list(self.known_models())
        self.models.picker.set_choices(refs)
        self.base.set_choices(refs)

    def start(self):
        problem = self.state.problem()
        if problem:
            self.status_label.setText(problem)
            return None
        models, base = list(self.state.models), self.state.base
        self.result = None
        self._set_saving(False)
        return self.runner.start(lambda token: similarity_job(models, base, token), "Reading the headers…")

    def merge_these(self) -> None:
        if self.merge_session is None:
            return
        problem = self.state.problem()
        if problem:
            self.status_label.setText(problem)
            return
        self.state.merge_these(self.merge_session)
        self.merge_filled.emit()

    def _on_progress(self, event: Progress) -> str:
        return (f"{event.tensors_done} / {event.tensors_total} tensors · {format_bytes(event.bytes_done)} "
                f"of {format_bytes(event.bytes_total)} · {event.current}")

    def _on_finished(self, result: SimilarityResult) -> str:
        self.result = result
        self.group_box.blockSignals(True)
        self.group_box.clear()
        self.group_box.addItems([WHOLE_MODEL] + [g.group for g in result.groups])
        self.group_box.setCurrentText(self.state.group)
        self.group_box.blockSignals(False)
        self._draw()
        self._set_saving(True)
        alike = ""
        if result.linkage is not None:
            alike = " Alike models sit together: " + ", ".join(result.models[i] for i in result.order) + "."
        return f"Compared {len(result.models)} models' changes in {format_duration(result.seconds)}.{alike}"

    def shown_group(self):
        """The SimilarityGroup on screen (the whole model when the chosen group is not in the result)."""
        if self.result is None:
            return None
        return next((g for g in self.result.groups if g.group == self.state.group), self.result.whole)

    def _draw(self) -> None:
        group = self.shown_group()
        if group is None:
            return
        labels = list(self.result.models)
        self.cosine_plot.set_matrix(group.cosine, labels)
        self.conflict_plot.set_matrix(group.sign_conflict, labels)
        self.dendrogram.set_linkage(self.result.linkage, labels, self.result.clustering_note)

    def _export_view(self) -> QWidget:
        return self.plots
