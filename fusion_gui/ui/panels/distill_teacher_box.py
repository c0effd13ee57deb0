"""The Distill form's "Teacher" options: an offline teacher cache (and the job that captures it),
on-policy batches (GKD's lmbda), and the vocabulary comparison of teacher and student."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QProgressBar, QPushButton

from fusion_gui.engine.distill.config import config_from_dict
from fusion_gui.engine.errors import InputError
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.ui.jobs import JobRunner, LatestJob
from fusion_gui.ui.panels.distill_form import PathRow, int_spin, spin


def capture_job(config, cache_dir: str, top_k: int, token):
    from fusion_gui.engine.distill.teacher_capture import capture_teacher

    return capture_teacher(config, cache_dir, top_k, cancel=token)


def overlap_job(teacher: str, student: str, token):
    from fusion_gui.engine.distill.vocab_overlap import vocab_overlap

    return vocab_overlap(teacher, student, token)


class TeacherOptionsBox(QGroupBox):
    """`config_dict()` gives the form's config (teacher, student, data, training) for the capture job;
    `config_part()` is what this box adds to it."""

    def __init__(self, config_dict: Callable[[], dict], parent=None):
        super().__init__("Teacher: offline cache, on-policy, vocabularies", parent)
        self.config_dict = config_dict
        self.cache_row = PathRow("Teacher cache folder (empty: the teacher runs live)", "Teacher cache folder")
        self.cache_row.setToolTip("Train from the teacher's top-k log-probabilities captured once: the teacher is "
                                  "not loaded, so it need not fit in memory beside the student.")
        self.top_k = int_spin(64, 1, 1_000_000)
        self.top_k.setToolTip("Log-probabilities kept per position; the rest of the teacher's mass is one bucket.")
        self.capture_button = QPushButton("Capture teacher")
        self.capture_button.setToolTip("Run the teacher once over the data and write its top k into the folder.")
        self.capture_button.clicked.connect(self.capture)
        self.capture_cancel = QPushButton("Cancel")
        self.capture_progress = QProgressBar(minimum=0, maximum=1000)
        self.capture_status = QLabel("")
        self.capture_status.setWordWrap(True)
        self.lmbda = spin(0.0, 0.0, 1.0, decimals=2, step=0.1)
        self.lmbda.setToolTip("GKD's lmbda: the share of batches the student completes itself and the teacher "
                              "scores (0: off).")
        self.max_new_tokens = int_spin(32, 1, 100_000)
        self.sample_temperature = spin(1.0, 0.0, 10.0, decimals=2)
        self.sample_temperature.setToolTip("The student's sampling temperature (0: greedy).")
        self.vocab_button = QPushButton("Compare vocabularies…")
        self.vocab_button.setToolTip("How many tokens the teacher's and the student's vocabularies share.")
        self.vocab_button.clicked.connect(self.compare_vocabularies)
        self.vocab_label = QLabel("")
        self.vocab_label.setWordWrap(True)
        grid = QGridLayout(self)
        grid.addWidget(QLabel("Cache"), 0, 0)
        grid.addWidget(self.cache_row, 0, 1, 1, 5)
        grid.addWidget(QLabel("top k"), 1, 0)
        grid.addWidget(self.top_k, 1, 1)
        grid.addWidget(self.capture_button, 1, 2)
        grid.addWidget(self.capture_cancel, 1, 3)
        grid.addWidget(self.capture_progress, 1, 4, 1, 2)
        grid.addWidget(self.capture_status, 2, 0, 1, 6)
        for i, (label, widget) in enumerate((("On-policy share", self.lmbda), ("New tokens", self.max_new_tokens),
                                             ("Sampling T", self.sample_temperature))):
            grid.addWidget(QLabel(label), 3, 2 * i)
            grid.addWidget(widget, 3, 2 * i + 1)
        grid.addWidget(self.vocab_button, 4, 0, 1, 2)
        grid.addWidget(self.vocab_label, 5, 0, 1, 6)
        self.capture_runner = JobRunner(self, start_button=self.capture_button, cancel_button=self.capture_cancel,
                                        progress_bar=self.capture_progress, status_label=self.capture_status,
                                        on_finished=self._captured, failure_title="Capturing the teacher failed",
                                        cancelled_text="Cancelled: no cache was written.")
        self.overlap = LatestJob(self)
        self.overlap.result.connect(self._show_overlap)
        self.overlap.failed.connect(lambda summary, _details: self.vocab_label.setText(summary))
        self.dialog = None
        self.last_overlap = None

    def config_part(self) -> dict:
        part = {}
        if self.cache_row.text().strip():
            part["teacher_cache"] = self.cache_row.text().strip()
        if self.lmbda.value() > 0:
            part["on_policy"] = {"lmbda": self.lmbda.value(), "max_new_tokens": self.max_new_tokens.value(),
                                 "temperature": self.sample_temperature.value()}
        return part

    def capture(self):
        raw = {k: v for k, v in self.config_dict().items() if k not in ("teacher_cache", "on_policy")}
        folder = self.cache_row.text().strip()
        try:
            if not folder:
                raise InputError("Choose a teacher cache folder to capture into.")
            config = config_from_dict(raw)
        except InputError as err:
            show_error(self, str(err), title="Cannot capture the teacher")
            return None
        top_k = self.top_k.value()
        return self.capture_runner.start(lambda token: capture_job(config, folder, top_k, token),
                                         "Loading the teacher and the data…")

    def _captured(self, result) -> str:
        if result.reused:
            return f"{result.cache_dir} already holds this teacher on this data (top {result.top_k}): reused."
        return (f"Captured {result.blocks} blocks (top {result.top_k}, {result.bytes_written / 1e6:.1f} MB) "
                f"into {result.cache_dir}; training reads it instead of the teacher.")

    def compare_vocabularies(self) -> None:
        raw = self.config_dict()
        teacher, student = raw.get("teacher", ""), raw.get("student", "")
        if not teacher or not student:
            self.vocab_label.setText("Pick a teacher and a student first.")
            return
        self.vocab_label.setText("Comparing the vocabularies…")
        self.overlap.schedule(lambda: (lambda token: overlap_job(teacher, student, token)))

    def _show_overlap(self, overlap) -> None:
        from fusion_gui.ui.dialogs.vocab_dialog import VocabDialog

        self.last_overlap = overlap
        self.vocab_label.setText(overlap.sentence())
        if overlap.comparison.partial_tokens:
            self.dialog = VocabDialog(overlap.comparison, self)
            self.dialog.show()
