"""Distill: a teacher into a student on the user's own text, with live loss curves.

The loss form is generated from the engine's LOSS_SPECS; the options become the same config dict
a distill YAML holds, validated by the engine's config_from_dict before the job starts, and are kept
in the session's DistillState. The job runs through a JobRunner; Pause toggles the threading.Event
the engine waits on between steps.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractButton, QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
    QPlainTextEdit, QProgressBar, QPushButton, QScrollArea, QSpinBox, QSplitter, QVBoxLayout, QWidget,
)

from fusion_gui.engine.distill.config import LOSS_SPECS, PRECISIONS, SCHEDULES, config_from_dict
from fusion_gui.engine.errors import InputError
from fusion_gui.events import DistillResult, EvalStep, Log, TrainStep
from fusion_gui.ui.widgets.verdict import VerdictView
from fusion_gui.session.tabs import DistillState
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.formatting import format_duration
from fusion_gui.ui.panels.distill_teacher_box import TeacherOptionsBox
from fusion_gui.ui.widgets.student_samples import StudentSamplesView
from fusion_gui.ui.panels.distill_form import LossRow, PathRow, int_spin, sci_spin, spin
from fusion_gui.ui.panels.distill_preflight import DistillPreflight
from fusion_gui.ui.panels.plot_tabs import _ask_and_save
from fusion_gui.ui.plots.loss_plot import LossPlot
from fusion_gui.ui.hub.publish_dialog import PublishButton
from fusion_gui.ui.jobs import JobRunner
from fusion_gui.ui.worker import JobWorker

DEFAULT_LOSSES = {"forward_kl": 1.0}


def distill_job(config, out_dir: str, pause: threading.Event, token, save_now: threading.Event | None = None):
    """The generator the worker runs (a module function so tests can wrap it)."""
    from fusion_gui.engine.distill import distill

    return distill(config, out_dir, cancel=token, pause=pause, save_now=save_now)


def perplexity(ce: float | None) -> float | None:
    return math.exp(min(50.0, ce)) if ce is not None and math.isfinite(ce) else None


class DistillPanel(QWidget):
    message = Signal(str)
    distilled = Signal(object)  # DistillResult

    def __init__(self, state: DistillState | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state if state is not None else DistillState()
        self.pause_event = threading.Event()
        self.save_now_event = threading.Event()
        self.last_result: DistillResult | None = None
        self.train_steps = 0  # TrainStep events seen in the current run

        # --- inputs
        self.teacher_row = PathRow("Teacher: a causal-LM folder", "Teacher model folder")
        self.student_row = PathRow("Student: a causal-LM folder (its vocabulary may differ)", "Student model folder")
        self.data_row = PathRow("A .txt, a .jsonl (text, chat messages or prompt/completion), or a datasets folder",
                                "Training text",
                                 folder=False, file_filter="Text (*.txt *.jsonl);;All files (*)")
        self.text_field = QLineEdit("text")
        self.text_field.setToolTip("The text column of a .jsonl or a datasets folder.")
        self.eval_fraction = spin(0.1, 0.0, 0.9, decimals=2, step=0.05)
        self.eval_fraction.setToolTip("Share of the packed blocks held out for evaluation (at least one).")
        self.output_row = PathRow("Output folder (must not exist yet)", "Output folder")
        inputs = QFormLayout()
        inputs.addRow("Teacher", self.teacher_row)
        inputs.addRow("Student", self.student_row)
        inputs.addRow("Data", self.data_row)
        data_opts = QHBoxLayout()
        data_opts.addWidget(QLabel("text field"))
        data_opts.addWidget(self.text_field)
        data_opts.addWidget(QLabel("held out"))
        data_opts.addWidget(self.eval_fraction)
        inputs.addRow("", data_opts)
        inputs.addRow("Output", self.output_row)
        self.preflight = DistillPreflight()  # tokens that carry loss, estimated peak memory
        inputs.addRow("", self.preflight)

        # --- losses, generated from the specs
        self.loss_rows = {name: LossRow(info, name in DEFAULT_LOSSES, DEFAULT_LOSSES.get(name, 1.0))
                          for name, info in LOSS_SPECS.items()}
        grid = QGridLayout()
        for i, row in enumerate(self.loss_rows.values()):
            grid.addWidget(row.check, i, 0)
            grid.addWidget(row.weight, i, 1)
            params = QGridLayout()  # two per line keeps TAID's four narrow
            for j, box in enumerate(row.params.values()):
                params.addWidget(box, j // 2, j % 2)
            grid.addLayout(params, i, 2)
        self.temperature = spin(1.0, 0.01, 100.0, decimals=2)
        self.temperature.setToolTip("Softens the logit losses (their value is scaled by T²).")
        grid.addWidget(QLabel("Temperature"), len(self.loss_rows), 0)
        grid.addWidget(self.temperature, len(self.loss_rows), 1)
        grid.setColumnStretch(2, 1)

        # --- training options
        self.max_steps = int_spin(200, 1)
        self.batch_size = int_spin(8, 1, 4096)
        self.seq_length = int_spin(128, 2, 1_000_000)
        self.learning_rate = sci_spin(5e-5, 1e-8, 1.0)
        self.lr_schedule = QComboBox()
        self.lr_schedule.addItems(SCHEDULES)
        self.lr_schedule.setCurrentText("cosine")
        self.warmup_steps = int_spin(0, 0)
        self.eval_every = int_spin(50, 0, special="at the end")
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.precision.setToolTip("bf16 / fp16 need a CUDA GPU; on a CPU training runs in fp32.")
        self.device = QComboBox()
        self.device.addItems(("auto", "cpu"))
        self.seed = int_spin(0, 0, 2**31 - 1)
        self.loss_chunk = int_spin(512, 0, 10_000_000, special="off")
        self.loss_chunk.setToolTip("Positions per chunk of the logit losses: the full logits never exist at once.")
        self.lora_rank = int_spin(0, 0, 4096, special="full fine-tune")
        self.lora_rank.setToolTip("Train the student as a LoRA of this rank (merged into it at the end).")
        self.lora_alpha = spin(16.0, 0.0, 1e4, decimals=1, step=1.0)
        training = QGridLayout()
        for i, (label, widget) in enumerate((
                ("Max steps", self.max_steps), ("Batch size", self.batch_size), ("Seq length", self.seq_length),
                ("Learning rate", self.learning_rate), ("Schedule", self.lr_schedule),
                ("Warm-up steps", self.warmup_steps), ("Eval every", self.eval_every),
                ("Precision", self.precision), ("Device", self.device), ("Seed", self.seed),
                ("Loss chunk", self.loss_chunk), ("LoRA rank", self.lora_rank), ("LoRA alpha", self.lora_alpha))):
            training.addWidget(QLabel(label), i // 2, 2 * (i % 2))
            training.addWidget(widget, i // 2, 2 * (i % 2) + 1)

        # --- run controls
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause", checkable=True, enabled=False)
        self.pause_button.toggled.connect(self.set_paused)
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.save_now_button = QPushButton("Save checkpoint now", enabled=False)
        self.save_now_button.setToolTip("Save a checkpoint after the current step, to resume from later.")
        self.save_now_button.clicked.connect(self.save_checkpoint_now)
        self.open_button = QPushButton("Open folder", enabled=False)
        self.open_button.clicked.connect(self.open_output)
        self.publish_button = PublishButton()  # shown once there is a student folder
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.status_label = QLabel("Pick a teacher, a student and some text, then Start.")
        self.status_label.setWordWrap(True)
        buttons = QHBoxLayout()
        for w in (self.start_button, self.pause_button, self.cancel_button, self.save_now_button, self.open_button,
                  self.publish_button):
            buttons.addWidget(w)

        form = QWidget()
        form_layout = QVBoxLayout(form)
        for title, layout in (("Models and data", inputs), ("Losses", grid), ("Training", training)):
            box = QGroupBox(title)
            box.setLayout(layout)
            form_layout.addWidget(box)
        self.teacher_box = TeacherOptionsBox(self.config_dict)  # offline cache, on-policy, vocabularies
        form_layout.addWidget(self.teacher_box)
        form_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(form)
        # the form scrolls up and down only: the column is never narrower than the form needs
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(form.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
                               + 2 * scroll.frameWidth())
        run_box = QGroupBox("Run")  # below the form, outside its scrolling: Start is always in view
        run_layout = QVBoxLayout(run_box)
        run_layout.addLayout(buttons)
        run_layout.addWidget(self.progress_bar)
        run_layout.addWidget(self.status_label)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(scroll, 1)
        left_layout.addWidget(run_box)

        # --- right: curves, the final comparison, the log
        self.plot = LossPlot()
        save_png = QPushButton("Save PNG…")
        save_png.clicked.connect(lambda: _ask_and_save(self, self.plot.save_png, "distill-losses.png", "png"))
        save_csv = QPushButton("Save CSV…")
        save_csv.clicked.connect(lambda: _ask_and_save(self, self.plot.save_csv, "distill-losses.csv", "csv"))
        self.result_label = QLabel("Held-out perplexity of the student and the teacher appears here at the end.")
        self.result_label.setTextFormat(Qt.TextFormat.RichText)
        self.result_label.setWordWrap(True)  # the hint is long; it must not widen the view
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.log_view = QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setMaximumHeight(110)
        bottom = QHBoxLayout()
        bottom.addWidget(self.result_label, 1)
        bottom.addWidget(save_png)
        bottom.addWidget(save_csv)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.plot, 1)
        right_layout.addLayout(bottom)
        self.verdict_view = VerdictView()  # the smoke check's verdict of the distilled student
        right_layout.addWidget(self.verdict_view)
        self.samples_view = StudentSamplesView()  # on-policy: the student's completions, scored by the teacher
        right_layout.addWidget(self.samples_view)
        right_layout.addWidget(self.log_view)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 6)
        splitter.setSizes([600, 800])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.runner = JobRunner(
            self, start_button=self.start_button, cancel_button=self.cancel_button, progress_bar=self.progress_bar,
            status_label=self.status_label,
            handlers={TrainStep: self._on_train_step, EvalStep: self._on_eval_step, Log: self._on_log,
                      **self.verdict_view.handlers(), **self.samples_view.handlers()},
            on_finished=self._on_finished, on_failed=lambda *_: self.result_label.setText(""),
            on_cancelled=self._on_cancelled, on_done=self._on_done, failure_title="Distillation failed",
            cancelled_text="Cancelled: nothing was written.")
        self.runner.started.connect(lambda _: (self.verdict_view.clear(), self.samples_view.clear_samples()))
        self._bind_state(form)

    def _bind_state(self, form: QWidget) -> None:
        """Every edit of the form writes DistillState (the config mapping and the output folder)."""
        for edit in form.findChildren(QLineEdit):
            edit.textChanged.connect(self._form_edited)
        for kind in (QSpinBox, QDoubleSpinBox):
            for box in form.findChildren(kind):
                box.valueChanged.connect(self._form_edited)
        for combo in form.findChildren(QComboBox):
            combo.currentIndexChanged.connect(self._form_edited)
        for button in form.findChildren(QAbstractButton):
            if button.isCheckable():
                button.toggled.connect(self._form_edited)
        self._form_edited()

    def _form_edited(self, *_args) -> None:
        self.state.config, self.state.out_dir = self.config_dict(), self.output_row.text()
        self.preflight.schedule(self.state.config)

    @property
    def worker(self) -> JobWorker | None:
        return self.runner.worker

    # --- the config ---------------------------------------------------------------------------

    def config_dict(self) -> dict:
        """What the form says, as a distill YAML mapping."""
        return {
            "teacher": self.teacher_row.text(), "student": self.student_row.text(),
            "data": {"path": self.data_row.text(), "text_field": self.text_field.text().strip() or "text",
                     "eval_fraction": self.eval_fraction.value()},
            "losses": {name: row.value() for name, row in self.loss_rows.items() if row.check.isChecked()},
            "temperature": self.temperature.value(),
            "training": {"max_steps": self.max_steps.value(), "batch_size": self.batch_size.value(),
                         "seq_length": self.seq_length.value(), "learning_rate": self.learning_rate.value(),
                         "lr_schedule": self.lr_schedule.currentText(), "warmup_steps": self.warmup_steps.value(),
                         "eval_every": self.eval_every.value(), "precision": self.precision.currentText(),
                         "device": self.device.currentText(), "seed": self.seed.value(),
                         "loss_chunk": self.loss_chunk.value(), "lora_rank": self.lora_rank.value(),
                         "lora_alpha": self.lora_alpha.value()},
        } | (self.teacher_box.config_part() if hasattr(self, "teacher_box") else {})

    def set_inputs(self, teacher: str = "", student: str = "", data: str = "", output: str = "") -> None:
        for row, value in ((self.teacher_row, teacher), (self.student_row, student), (self.data_row, data),
                           (self.output_row, output)):
            if value:
                row.setText(str(value))

    # --- running ------------------------------------------------------------------------------

    def start(self) -> JobWorker | None:
        if self.runner.running:
            return None
        self._form_edited()
        try:
            config = config_from_dict(self.state.config)
        except InputError as err:
            show_error(self, str(err), title="Cannot start the distillation")
            return None
        out_dir = self.state.out_dir
        if not out_dir:
            show_error(self, "Choose an output folder (one that does not exist yet).",
                       title="Cannot start the distillation")
            return None
        if Path(out_dir).exists():
            show_error(self, f"Output folder '{out_dir}' already exists; choose a new one.",
                       title="Cannot start the distillation")
            return None
        pause, save_now = self.pause_event, self.save_now_event
        pause.clear()
        save_now.clear()
        self.last_result, self.train_steps = None, 0
        self.plot.reset()
        self.log_view.clear()
        self.result_label.setText("Training…")
        self.pause_button.setEnabled(True)
        self.save_now_button.setEnabled(True)
        self.open_button.setEnabled(False)
        self.publish_button.set_result(None)
        return self.runner.start(lambda token: distill_job(config, out_dir, pause, token, save_now),
                                 "Loading the models and the data…")

    def set_paused(self, paused: bool) -> None:
        """Training waits after the current step while paused; the engine checks between steps."""
        if paused:
            self.pause_event.set()
            self.status_label.setText("Pausing after the current step…")
        else:
            self.pause_event.clear()
            if self.worker is not None and self.worker.running:
                self.status_label.setText("Resumed.")
        self.pause_button.setText("Resume" if paused else "Pause")
        if self.pause_button.isChecked() != paused:
            self.pause_button.setChecked(paused)

    def save_checkpoint_now(self) -> None:
        """The engine saves a checkpoint after the current step (also while paused: on resume)."""
        self.save_now_event.set()
        self._log("A checkpoint will be saved after the current step.")

    def cancel(self) -> None:
        self.runner.cancel()  # a paused job notices the cancel too

    def open_output(self) -> None:
        if self.last_result is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.last_result.out_dir))

    def _log(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def _on_train_step(self, event: TrainStep) -> str | None:
        self.train_steps += 1
        self.plot.add_train(event)
        if self.pause_event.is_set():
            return None
        eta = event.elapsed_s * (event.total_steps - event.step) / max(1, event.step)
        extra = f" · t {event.taid_t:.3f}" if event.taid_t is not None else ""
        return (f"Step {event.step}/{event.total_steps} · loss {event.losses.get('total', math.nan):.4g} · "
                f"lr {event.lr:.3g}{extra} · {format_duration(event.elapsed_s)} elapsed, "
                f"~{format_duration(eta)} left")

    def _on_eval_step(self, event: EvalStep) -> None:
        self.plot.add_eval(event)
        self._log(f"step {event.step} held-out: " + ", ".join(f"{k} {v:.4g}" for k, v in event.losses.items()))

    def _on_log(self, event: Log) -> str | None:
        self._log(event.message)
        if event.level == "warning":
            self.message.emit(event.message)
        return event.message + " Press Resume to go on." if event.message.startswith("Paused") else None

    def _on_finished(self, result: DistillResult) -> str:
        self.last_result = result
        self.plot.flush()
        self.result_label.setText(self.result_html(result.final_eval))
        self.open_button.setEnabled(True)
        self.verdict_view.show_verdict(result.smoke)
        self.message.emit(f"Distilled into {result.out_dir}.")
        self.publish_button.set_result(result.out_dir)
        self.distilled.emit(result)
        return f"Distilled {result.steps} steps in {format_duration(result.seconds)} into {result.out_dir}."

    @staticmethod
    def result_html(final_eval: dict[str, float]) -> str:
        def cell(value: float | None) -> str:
            return "–" if value is None else f"{value:.4g}"

        s, t = perplexity(final_eval.get("ce_student")), perplexity(final_eval.get("ce_teacher"))
        kl = final_eval.get("kl_teacher")
        return ("<table cellspacing='0' cellpadding='3'><tr><th align='left'>held-out</th><th>student</th>"
                "<th>teacher</th></tr>"
                f"<tr><td>perplexity</td><td align='right'>{cell(s)}</td><td align='right'>{cell(t)}</td></tr>"
                f"<tr><td>KL to teacher</td><td align='right'>{cell(kl)}</td><td align='right'>0</td></tr>"
                "</table>")

    def _on_cancelled(self) -> None:
        self.result_label.setText("")

    def _on_done(self) -> None:
        self.set_paused(False)
        self.pause_button.setEnabled(False)
        self.save_now_button.setEnabled(False)
        self.plot.flush()
