"""Compare models without merging: the engine's diff generator on a worker, the same plots.
The chosen models live in the session's CompareState; the job runs through a JobRunner."""

from __future__ import annotations

from functools import partial

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton,
    QVBoxLayout, QWidget,
)

from fusion_gui.events import DiffResult, Log, Progress
from fusion_gui.session.tabs import CompareState
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.formatting import format_bytes, format_duration
from fusion_gui.ui.panels.plot_tabs import PlotsSideBySide
from fusion_gui.ui.jobs import JobRunner
from fusion_gui.ui.widgets.file_dialogs import ask_folder
from fusion_gui.ui.worker import JobWorker

NO_BASE = ""


def diff_job(model_a: str, model_b: str, base: str | None, device: str, token):
    """The generator the worker runs (a module function so tests can wrap it)."""
    from fusion_gui.engine.inspect.diff import diff

    return diff(model_a, model_b, base=base, device=device, cancel=token)


def _show_choice(picker: "ModelPicker", value: str) -> None:
    if picker.text() != value:
        picker.set_text(value)


class ModelPicker(QWidget):
    """An editable list of known models (path or repo id) with a Browse button."""

    def __init__(self, placeholder: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.combo = QComboBox(editable=True)
        self.combo.lineEdit().setPlaceholderText(placeholder)
        self.combo.setMinimumContentsLength(30)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(browse)

    def set_choices(self, refs: list[str]) -> None:
        current = self.combo.currentText()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(refs)
        self.combo.setCurrentText(current)
        self.combo.blockSignals(False)

    def text(self) -> str:
        return self.combo.currentText().strip()

    def set_text(self, ref: str) -> None:
        self.combo.setCurrentText(str(ref))

    def _browse(self) -> None:
        folder = ask_folder(self, "Pick a model folder")
        if folder:
            self.set_text(folder)


class ComparePanel(QWidget):
    message = Signal(str)

    def __init__(self, known_models=lambda: [], state: CompareState | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.known_models = known_models
        self.state = state if state is not None else CompareState()
        self.last_result: DiffResult | None = None
        self.model_a = ModelPicker("Model A: a folder or a cached repo id")
        self.model_b = ModelPicker("Model B")
        self.base = ModelPicker("Optional: the base both were fine-tuned from")
        self.device_combo = QComboBox()
        for label, value in (("CPU", "cpu"), ("Auto", "auto"), ("CUDA", "cuda")):
            self.device_combo.addItem(label, value)
        self.compare_button = QPushButton("Compare")
        self.compare_button.clicked.connect(self.start_compare)
        self.cancel_button = QPushButton("Cancel")
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.status_label = QLabel("Pick two models. With a base, each model's change from it is "
                                   "measured and the changes compared; without one, B is measured against A.")
        self.status_label.setWordWrap(True)
        self.plots = PlotsSideBySide(show_result=False, stem="compare")

        form = QFormLayout()
        form.addRow("Model A", self.model_a)
        form.addRow("Model B", self.model_b)
        form.addRow("Base", self.base)
        buttons = QHBoxLayout()
        buttons.addWidget(QLabel("Device"))
        buttons.addWidget(self.device_combo)
        buttons.addWidget(self.compare_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress_bar, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addWidget(self.plots, 1)
        self.runner = JobRunner(
            self, start_button=self.compare_button, cancel_button=self.cancel_button,
            progress_bar=self.progress_bar, status_label=self.status_label,
            handlers={Progress: self._on_progress, Log: lambda event: self.message.emit(event.message)},
            every_event=self.plots.handle_event, on_finished=self._on_finished, failure_title="Compare failed")
        # the pickers and the state follow each other: a typed path is the state's, a set state is shown
        for picker, name in ((self.model_a, "model_a"), (self.model_b, "model_b"), (self.base, "base")):
            picker.combo.currentTextChanged.connect(lambda text, n=name: setattr(self.state, n, text.strip()))
            getattr(self.state.events, name).connect(partial(_show_choice, picker))
        self.device_combo.currentIndexChanged.connect(
            lambda _: setattr(self.state, "device", self.device_combo.currentData()))
        self.state.device = self.device_combo.currentData()

    @property
    def worker(self) -> JobWorker | None:
        return self.runner.worker

    def refresh_choices(self) -> None:
        refs = list(self.known_models())
        for picker in (self.model_a, self.model_b, self.base):
            picker.set_choices(refs)

    def set_models(self, model_a: str, model_b: str, base: str | None = None) -> None:
        self.state.choose(model_a, model_b, base or NO_BASE)

    def start_compare(self) -> JobWorker | None:
        if self.runner.running:
            return None
        state = self.state
        model_a, model_b, base, device = state.model_a, state.model_b, state.base or None, state.device
        if not model_a or not model_b:
            show_error(self, "Pick two models to compare.")
            return None
        self.last_result = None
        self.plots.reset(())
        return self.runner.start(lambda token: diff_job(model_a, model_b, base, device, token), "Comparing…")

    def cancel(self) -> None:
        self.runner.cancel()

    def _on_progress(self, event: Progress) -> str:
        return (f"{event.tensors_done} / {event.tensors_total} tensors · "
                f"{format_bytes(event.bytes_done)} · {event.current}")

    def _on_finished(self, result: DiffResult) -> str:
        self.last_result = result
        self.plots.flush()
        against = f"against {result.base_model}" if result.base_model else "B against A"
        layers = sum(1 for layer in result.layers if layer.layer is not None)
        return (f"Compared {len(result.tensors)} tensors in {layers} layers "
                f"({against}) in {format_duration(result.seconds)}.")
