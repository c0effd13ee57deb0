"""The tasks an evaluation scores beyond the demo skills: JSONL task files (multiple choice or
generation), text files (perplexity), lm-eval task names, and the chat-template switch. Each task is
checked as it is added, so a bad line is named before any model loads. Writes EvalState.task_specs."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox, QHBoxLayout, QLineEdit, QListWidget, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.evaluate.task_files import TaskSettings
from fusion_gui.session.evaluation import LM_EVAL_PREFIX, parse_task
from fusion_gui.session.tabs import EvalState
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.ui.widgets.file_dialogs import ask_open_file

TASK_FILTER = "Task files (*.jsonl *.json *.txt *.md);;All files (*)"


class TaskChooser(QWidget):
    message = Signal(str)

    def __init__(self, state: EvalState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.list = QListWidget()
        self.list.setMaximumHeight(56)
        add_file = QPushButton("Add task file…")
        add_file.setToolTip("JSONL multiple choice {query, choices, answer} or generation {prompt, answer}; "
                            "a text file scores perplexity.")
        add_file.clicked.connect(self._add_file_dialog)
        self.lm_eval_edit = QLineEdit(placeholderText="lm-eval task, e.g. arc_easy")
        self.lm_eval_edit.returnPressed.connect(lambda: self.add_lm_eval(self.lm_eval_edit.text()))
        add_lm_eval = QPushButton("Add lm-eval task")
        add_lm_eval.clicked.connect(lambda: self.add_lm_eval(self.lm_eval_edit.text()))
        self.include_edit = QLineEdit(placeholderText="Optional: a folder of lm-eval task YAMLs")
        remove = QPushButton("Remove")
        remove.clicked.connect(self._remove_selected)
        self.chat_box = QCheckBox("Chat template")
        self.chat_box.setToolTip("Wrap each question in the tokenizer's chat template (instruction models).")
        self.chat_box.setChecked(state.chat_template)
        self.chat_box.toggled.connect(lambda on: setattr(self.state, "chat_template", on))
        self.regex_edit = QLineEdit(placeholderText="Optional: answer regex (generation)")
        self.limit_box = QSpinBox(minimum=0, maximum=1_000_000, specialValueText="all examples")
        self.limit_box.setToolTip("Score only the first N examples of each task.")

        row1 = QHBoxLayout()
        row1.addWidget(add_file)
        row1.addWidget(self.lm_eval_edit, 1)
        row1.addWidget(add_lm_eval)
        row1.addWidget(self.include_edit, 1)
        row1.addWidget(remove)
        row2 = QHBoxLayout()
        row2.addWidget(self.chat_box)
        row2.addWidget(self.regex_edit, 1)
        row2.addWidget(self.limit_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row1)
        layout.addWidget(self.list)
        layout.addLayout(row2)
        state.events.task_specs.connect(self._show)
        self._show(state.task_specs)

    def settings(self) -> TaskSettings:
        return TaskSettings(regex=self.regex_edit.text().strip() or None, chat_template=self.chat_box.isChecked(),
                            limit=self.limit_box.value() or None)

    def include_path(self) -> str | None:
        return self.include_edit.text().strip() or None

    def tasks(self):
        """Every chosen task, parsed with the current settings (InputError names what is wrong)."""
        return [parse_task(spec, self.settings(), self.include_path()) for spec in self.state.task_specs]

    def add(self, spec: str) -> bool:
        """Check the task now and add it; an error is shown and nothing is added."""
        spec = spec.strip()
        try:
            parse_task(spec, self.settings(), self.include_path())
        except InputError as err:
            show_error(self, str(err), title="Cannot use the task")
            return False
        if spec not in self.state.task_specs:
            self.state.task_specs = (*self.state.task_specs, spec)
        return True

    def add_lm_eval(self, name: str) -> bool:
        if self.add(LM_EVAL_PREFIX + name.strip()):
            self.lm_eval_edit.clear()
            return True
        return False

    def _add_file_dialog(self) -> None:
        path = ask_open_file(self, "A task file", "", TASK_FILTER)
        if path:
            self.add(path)

    def _remove_selected(self) -> None:
        gone = {item.text() for item in self.list.selectedItems()}
        self.state.task_specs = tuple(s for s in self.state.task_specs if s not in gone)

    def _show(self, specs) -> None:
        self.list.clear()
        self.list.addItems(list(specs))
