"""Spectral health per layer (an optional metric): the power-law alpha of every weight matrix of each
picked model, fitted on the worker one matrix at a time and drawn as it comes; "From the last merge"
picks the base, the inputs and the merged output, to see a merge before and after; "From the Merge view"
picks the Merge view's models."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from fusion_gui.engine.inspect.spectral import SpectralResult, SpectralTensor
from fusion_gui.events import Progress
from fusion_gui.formatting import format_duration
from fusion_gui.session.inspect import InspectState
from fusion_gui.ui.jobs import JobRunner
from fusion_gui.ui.panels.model_list import ModelList, bind_list
from fusion_gui.ui.panels.result_export import ExportsResult
from fusion_gui.ui.plots.alpha_plot import AlphaPlot


def spectral_job(models: list[str], token):
    from fusion_gui.engine.inspect.spectral import spectral

    return spectral(models, cancel=token)


class SpectralPanel(ExportsResult, QWidget):
    export_stem = "spectral"

    def __init__(self, state: InspectState, known_models=lambda: [], merge_session=None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.state, self.known_models, self.merge_session = state, known_models, merge_session
        self.result: SpectralResult | None = None
        self.models = ModelList("A model: a folder or a cached repo id")
        self.start_button = QPushButton("Fit the spectra")
        self.from_merge_button = QPushButton("From the Merge view")
        self.from_merge_button.setToolTip("The Merge view's models, base first")
        self.from_merge_button.setEnabled(merge_session is not None)
        self.cancel_button = QPushButton("Cancel")
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.status_label = QLabel("The power-law exponent alpha of each weight matrix's eigenvalue spectrum, "
                                   "as WeightWatcher fits it: about 2 to 6 is well trained, above 6 under-trained "
                                   "or random, below 2 over-fitted. Give a merge's base, inputs and output to see "
                                   "what merging did to each layer. Each matrix takes a full SVD: minutes for a "
                                   "7B model.")
        self.status_label.setWordWrap(True)
        self.png_button, self.csv_button = QPushButton("Save PNG…"), QPushButton("Save CSV…")
        self.plot = AlphaPlot()
        controls = QHBoxLayout()
        for w in (self.start_button, self.cancel_button):
            controls.addWidget(w)
        controls.addWidget(self.progress_bar, 1)
        controls.addWidget(self.from_merge_button)
        controls.addWidget(self.png_button)
        controls.addWidget(self.csv_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.models)
        lay.addLayout(controls)
        lay.addWidget(self.status_label)
        lay.addWidget(self.plot, 1)
        self.runner = JobRunner(self, start_button=self.start_button, cancel_button=self.cancel_button,
                                progress_bar=self.progress_bar, status_label=self.status_label,
                                handlers={Progress: self._on_progress, SpectralTensor: self._on_fit},
                                on_finished=self._on_finished, on_done=self._enable_start,
                                failure_title="Spectral fit failed")
        self.start_button.clicked.connect(self.start)
        self.from_merge_button.clicked.connect(self.from_merge)
        self._connect_saving()
        self.models.add_requested.connect(
            lambda ref: self.state.set_spectral_models([*self.state.spectral_models, ref]))
        self.models.remove_requested.connect(
            lambda ref: self.state.set_spectral_models([m for m in self.state.spectral_models if m != ref]))
        bind_list(self.models, self.state.events.spectral_models, lambda: self.state.spectral_models)
        self.state.events.spectral_models.connect(lambda _: self._enable_start())
        self._set_saving(False)
        self._enable_start()

    def _enable_start(self) -> None:
        problem = "" if self.state.spectral_models else "Add at least one model to fit."
        self.start_button.setEnabled(not problem and not self.runner.running)
        self.start_button.setToolTip(problem or "Fit the power law of each weight matrix's spectrum")

    def from_merge(self) -> bool:
        if self.merge_session is None or not self.state.spectral_from_merge(self.merge_session.state):
            self.status_label.setText("The Merge view holds no models yet: add some there first.")
            return False
        return True

    def refresh_choices(self) -> None:
        self.models.picker.set_choices(list(self.known_models()))

    def start(self):
        models = list(self.state.spectral_models)
        if not models:
            self.status_label.setText("Add at least one model to fit.")
            return None
        self.result = None
        self.plot.reset()
        self._set_saving(False)
        return self.runner.start(lambda token: spectral_job(models, token), "Reading the headers…")

    def _on_fit(self, event: SpectralTensor) -> None:
        self.plot.add_fit(event)

    def _on_progress(self, event: Progress) -> str:
        return f"{event.tensors_done} / {event.tensors_total} matrices · {event.current}"

    def _on_finished(self, result: SpectralResult) -> str:
        self.result = result
        self.plot.flush()
        self._set_saving(True)
        fitted = sum(1 for t in result.tensors if t.note == "")
        return (f"Fitted {fitted} of {len(result.tensors)} matrices of {len(result.models)} model(s) in "
                f"{format_duration(result.seconds)}; matrices with fewer than 20 eigenvalues get no alpha.")
