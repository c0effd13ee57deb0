"""The empty start screen: what the app does, and a "Try the demo" button that builds (or reuses)
the tiny demo models on a worker thread and hands their folders over; the window merges and
scores them from there."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from fusion_gui.engine.evaluate.demo import build_demo
from fusion_gui.events import Log, StepProgress
from fusion_gui.ui.jobs import JobRunner
from fusion_gui.ui.worker import JobWorker

INTRO = ("<h2>Merge models on your own machine</h2>"
         "<p>Add two or more fine-tunes of one base model in the Models panel, pick a method, and watch "
         "every layer while the merge streams. No models at hand? The demo trains a tiny base model "
         "and two fine-tunes on this computer in about a minute: one adds one to each digit "
         "(<i>count</i>), one reverses words (<i>reverse</i>). One click builds them, merges them into "
         "a new folder and scores the merge against its inputs.</p>")


class StartPanel(QWidget):
    message = Signal(str)
    demo_ready = Signal(list)  # [base, count, reverse] folders, base first

    def __init__(self, root=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.root = root  # None: the user data folder (FUSION_GUI_DATA_DIR overrides it)
        intro = QLabel(INTRO, wordWrap=True)
        intro.setTextFormat(Qt.TextFormat.RichText)
        self.demo_button = QPushButton("Try the demo")
        self.demo_button.clicked.connect(self.start_demo)
        self.progress_bar = QProgressBar(minimum=0, maximum=1000, visible=False)
        self.status_label = QLabel("", wordWrap=True)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(intro)
        layout.addWidget(self.demo_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addStretch(2)
        self.runner = JobRunner(
            self, start_button=self.demo_button, progress_bar=self.progress_bar, status_label=self.status_label,
            handlers={StepProgress: self._on_step, Log: self._on_log}, on_finished=self._on_finished,
            failure_title="Demo failed")

    @property
    def worker(self) -> JobWorker | None:
        return self.runner.worker

    def start_demo(self) -> JobWorker | None:
        root = self.root
        self.progress_bar.setVisible(True)
        return self.runner.start(lambda token: build_demo(root, cancel=token), "Building the demo models…")

    def _on_step(self, event: StepProgress) -> str:
        # three stages of similar length: pretrain, then one fine-tune per skill
        stage = {"pretrain base": 0, "fine-tune count": 1, "fine-tune reverse": 2}.get(event.stage, 0)
        self.runner.set_fraction((stage + event.fraction) / 3)
        loss = f" · loss {event.loss:.2f}" if event.loss is not None else ""
        return f"{event.stage}: step {event.done} / {event.total}{loss}"

    def _on_log(self, event: Log) -> str:
        self.message.emit(event.message)
        return event.message

    def _on_finished(self, demo) -> str:
        self.demo_ready.emit([str(p) for p in demo.paths])
        how = f"built in {demo.seconds:.0f} s" if demo.built else "already built"
        return f"Demo models {how}: {demo.base.parent}. Merging them now…"
