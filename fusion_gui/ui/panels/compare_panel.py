"""Compare models without merging: the engine's diff generator on a worker, the same plots."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton,
    QVBoxLayout, QWidget,
)

from fusion_gui.events import DiffResult, Log, Progress
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.formatting import format_bytes, format_duration
from fusion_gui.ui.panels.plot_tabs import PlotsSideBySide
from fusion_gui.ui.worker import JobWorker

NO_BASE = ""


def diff_job(model_a: str, model_b: str, base: str | None, device: str, token):
    """The generator the worker runs (a module function so tests can wrap it)."""
    from fusion_gui.engine.inspect.diff import diff

    return diff(model_a, model_b, base=base, device=device, cancel=token)


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
        folder = QFileDialog.getExistingDirectory(self, "Pick a model folder")
        if folder:
            self.set_text(folder)


class ComparePanel(QWidget):
    message = Signal(str)

    def __init__(self, known_models=lambda: [], parent: QWidget | None = None):
        super().__init__(parent)
        self.known_models = known_models
        self.worker: JobWorker | None = None
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
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
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

    def refresh_choices(self) -> None:
        refs = list(self.known_models())
        for picker in (self.model_a, self.model_b, self.base):
            picker.set_choices(refs)

    def set_models(self, model_a: str, model_b: str, base: str | None = None) -> None:
        self.model_a.set_text(model_a)
        self.model_b.set_text(model_b)
        self.base.set_text(base or NO_BASE)

    def start_compare(self) -> JobWorker | None:
        if self.worker is not None and self.worker.running:
            return None
        model_a, model_b, base = self.model_a.text(), self.model_b.text(), self.base.text() or None
        if not model_a or not model_b:
            show_error(self, "Pick two models to compare.")
            return None
        device = self.device_combo.currentData()
        worker = JobWorker(lambda token: diff_job(model_a, model_b, base, device, token), self)
        worker.event.connect(self._on_event)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(lambda: self.status_label.setText("Cancelled."))
        worker.done.connect(self._on_done)
        self.worker, self.last_result = worker, None
        self.plots.reset(())
        self.progress_bar.setValue(0)
        self.status_label.setText("Comparing…")
        self.compare_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def _on_event(self, event: object) -> None:
        if isinstance(event, Progress):
            self.progress_bar.setValue(int(event.fraction * 1000))
            self.status_label.setText(f"{event.tensors_done} / {event.tensors_total} tensors · "
                                      f"{format_bytes(event.bytes_done)} · {event.current}")
        elif isinstance(event, Log):
            self.message.emit(event.message)
        self.plots.handle_event(event)

    def _on_finished(self, result: DiffResult) -> None:
        self.last_result = result
        self.plots.flush()
        self.progress_bar.setValue(1000)
        against = f"against {result.base_model}" if result.base_model else "B against A"
        layers = sum(1 for layer in result.layers if layer.layer is not None)
        self.status_label.setText(f"Compared {len(result.tensors)} tensors in {layers} layers "
                                  f"({against}) in {format_duration(result.seconds)}.")

    def _on_failed(self, summary: str, details: str) -> None:
        self.status_label.setText(f"Failed: {summary}")
        show_error(self, summary, details, "Compare failed")

    def _on_done(self) -> None:
        self.compare_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
