"""The drill-down of one tensor, in a dialog opened by a click on a heatmap cell or a layer point.

The engine's drill_down runs as a job (JobRunner, never on the GUI thread); the engine caches its
results, so reopening a tensor is instant. A new click while one runs cancels it and opens the new one.
One dialog per window: later clicks reuse it.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtWidgets import (QComboBox, QDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QVBoxLayout, QWidget)

from fusion_gui.engine.inspect.export import write_csv
from fusion_gui.events import Progress, TensorDrillDown
from fusion_gui.formatting import format_duration
from fusion_gui.session.inspect import (DrillDownRequest, merge_density, request_from_compare,
                                        request_from_merge)
from fusion_gui.ui.jobs import JobRunner
from fusion_gui.ui.plots.drill_down_plots import DrillDownPlots
from fusion_gui.ui.widgets.file_dialogs import ask_save_file

RequestFor = Callable[[str], "DrillDownRequest | None"]  # tensor name -> what to open (None: cannot)


def drill_down_job(request: DrillDownRequest, token):
    """The generator the worker runs (a module function so tests and benchmarks can wrap it)."""
    from fusion_gui.engine.inspect.tensor import drill_down

    return drill_down(request.tensor, list(request.models), request.base, density=request.density, cancel=token)


class DrillDownDialog(QDialog):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Tensor drill-down")
        self.resize(1180, 760)
        self.request_for: RequestFor = lambda name: None
        self.request: DrillDownRequest | None = None
        self._pending: DrillDownRequest | None = None
        self.result: TensorDrillDown | None = None
        self.tensor_box = QComboBox()
        self.tensor_box.setMinimumContentsLength(40)
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.cancel_button = QPushButton("Cancel")
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.plots = DrillDownPlots()
        self.png_button = QPushButton("Save PNG…")
        self.csv_button = QPushButton("Save CSV…")
        self.png_button.clicked.connect(lambda: self._ask_and_save("png"))
        self.csv_button.clicked.connect(lambda: self._ask_and_save("csv"))
        top = QHBoxLayout()
        top.addWidget(QLabel("Tensor"))
        top.addWidget(self.tensor_box, 1)
        top.addWidget(self.cancel_button)
        top.addWidget(self.progress_bar)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status_label, 1)
        bottom.addWidget(self.png_button)
        bottom.addWidget(self.csv_button)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.plots, 1)
        lay.addLayout(bottom)
        self.runner = JobRunner(self, cancel_button=self.cancel_button, progress_bar=self.progress_bar,
                                status_label=self.status_label, handlers={Progress: self._on_progress},
                                on_finished=self._on_finished, on_done=self._start_pending,
                                failure_title="Drill-down failed")
        self.tensor_box.currentTextChanged.connect(self._on_tensor_chosen)
        self._set_saving(False)

    def open_tensors(self, names: list[str], request_for: RequestFor) -> None:
        """Offer `names`; open the first one (a heatmap cell has one to three, a layer more)."""
        self.request_for = request_for
        self.tensor_box.blockSignals(True)
        self.tensor_box.clear()
        self.tensor_box.addItems(list(names))
        self.tensor_box.blockSignals(False)
        self.show()
        self.raise_()
        if names:
            self._on_tensor_chosen(names[0])

    def _on_tensor_chosen(self, name: str) -> None:
        if not name:
            return
        request = self.request_for(name)
        if request is None:
            self.status_label.setText("Pick a base and at least one other model to see how this tensor changed.")
            return
        self.open_request(request)

    def open_request(self, request: DrillDownRequest) -> None:
        """Run the drill-down of `request` (after cancelling one that runs)."""
        if self.runner.running:
            self._pending = request
            self.runner.cancel()
            return
        self.request = request
        self.setWindowTitle(f"Tensor drill-down: {request.title}")
        self._set_saving(False)
        self.runner.start(lambda token: drill_down_job(request, token), f"Opening {request.tensor}…")

    def _start_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.open_request(pending)

    def _on_progress(self, event: Progress) -> str:
        return f"{event.current} ({event.tensors_done}/{event.tensors_total})"

    def _on_finished(self, result: TensorDrillDown) -> str:
        self.result = result
        self.plots.show_result(result)
        self._set_saving(True)
        how = "from the cache" if result.cached else f"in {format_duration(result.seconds)}"
        return f"{result.name}: {len(result.changes)} model(s) against {result.base_model}, {how}."

    def _set_saving(self, enabled: bool) -> None:
        self.png_button.setEnabled(enabled)
        self.csv_button.setEnabled(enabled)

    def save_png(self, path) -> None:
        self.plots.save_png(path)

    def save_csv(self, path) -> None:
        write_csv(self.result, path)

    def _ask_and_save(self, suffix: str) -> None:
        stem = (self.result.name if self.result else "tensor").replace("/", "_")
        path = ask_save_file(self, "Save", f"{stem}.{suffix}", f"{suffix.upper()} (*.{suffix})")
        if path:
            (self.save_png if suffix == "png" else self.save_csv)(path)


def open_drill_down(parent: QWidget, names: list[str], request_for: RequestFor) -> DrillDownDialog:
    """The window's one drill-down dialog (made on first use), showing `names`."""
    dialog = getattr(parent, "_drill_down_dialog", None)
    if dialog is None:
        dialog = DrillDownDialog(parent)
        parent._drill_down_dialog = dialog
    dialog.open_tensors(names, request_for)
    return dialog


def connect_drill_downs(window: QWidget, merge_plots, merge_session, compare_plots, compare_state) -> None:
    """Clicks on the Merge view's and Compare's plots open the drill-down: the Merge view's inputs
    against its base; Compare's models against its base (or B against A), at the Merge view's density."""
    merge_plots.tensors_clicked.connect(lambda names: open_drill_down(
        window, names, lambda t: request_from_merge(merge_session.state, t)))
    compare_plots.tensors_clicked.connect(lambda names: open_drill_down(
        window, names, lambda t: request_from_compare(compare_state, t, merge_density(merge_session.state))))
