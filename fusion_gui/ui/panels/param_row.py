"""One generated form row per method parameter: a slider, spin box, check box or file field, or a
summary with "Per layer…" when the value varies by layer or tensor name."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QDoubleSpinBox, QHBoxLayout, QLineEdit, QPushButton, QSpinBox, QToolButton, QWidget,
)
from superqt import QElidingLabel, QLabeledDoubleSlider, QLabeledSlider

from fusion_gui.session.merge_state import is_scalar, starting_value
from fusion_gui.ui.panels.setting_editor import SettingEditorDialog, describe_setting
from fusion_gui.ui.widgets.file_dialogs import ask_open_file
from fusion_gui.ui.widgets.number_boxes import decimals_for

FILE_FILTER = "Text (*.txt *.jsonl *.json *.md);;All files (*)"
INVALID_COLOUR = "#b3261e"


def ask_file(parent: QWidget, title: str, start: str = "") -> str:
    return ask_open_file(parent, title, start, FILE_FILTER)


def path_problem(spec, value) -> str | None:
    """Why a Path parameter's value names no readable file, in one sentence; None when it does."""
    try:
        spec.validate(value)
    except ValueError as err:
        return f"{str(err)[0].upper()}{str(err)[1:]}."
    return None


class FileField(QWidget):
    """A file path as text, with Browse…; `chosen(text)` when the user picks or types one."""

    chosen = Signal(str)

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.edit = QLineEdit(placeholderText="Choose a text file…")
        self.edit.editingFinished.connect(self._typed)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.browse_button)
        self._shown = ""

    def setValue(self, text: str) -> None:  # noqa: N802 - the name ParamRow uses for every widget
        self._shown = str(text)
        self.edit.setText(self._shown)

    def browse(self) -> None:
        path = ask_file(self, self.title, self.edit.text().strip())
        if path:
            self.setValue(path)
            self.chosen.emit(path)

    def _typed(self) -> None:
        text = self.edit.text().strip()
        if text != self._shown:
            self._shown = text
            self.chosen.emit(text)


def spin_decimals(spec) -> int:
    """Enough decimals to show a small default (1e-6 as 0.00000100); 4 otherwise."""
    return decimals_for(spec.default) if isinstance(spec.default, float) else 4


class ParamRow(QWidget):
    """One global parameter: a value widget, or a summary when it varies by layer or name."""

    edited = Signal(str, object)  # parameter name, new setting (None = back to default)

    def __init__(self, spec, setting, num_layers: int | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.spec, self.num_layers = spec, num_layers
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.value_widget = self._make_value_widget()
        self.summary = QElidingLabel()
        self.curve_button = QToolButton(text="Per layer…")
        self.curve_button.setToolTip("Vary this parameter across layers or by tensor name")
        self.curve_button.clicked.connect(self.edit_curve)
        self.reset_button = QToolButton(text="↺")
        self.reset_button.setToolTip("Back to the method's default")
        self.reset_button.clicked.connect(lambda: self.edited.emit(spec.name, None))
        layout.addWidget(self.value_widget, 1)
        layout.addWidget(self.summary, 0 if spec.type is Path else 1)  # a file's flag stays short
        layout.addWidget(self.curve_button)
        layout.addWidget(self.reset_button)
        self.curve_button.setVisible(spec.per_tensor and spec.type is not Path)  # one value for the whole merge
        self.setToolTip(spec.help)
        self.show_setting(setting)

    def _make_value_widget(self) -> QWidget:
        spec = self.spec
        if spec.type is Path:
            widget = FileField(f"{spec.name}: {spec.help}" if spec.help else spec.name)
            widget.chosen.connect(lambda text: self.edited.emit(spec.name, text or None))
            return widget
        if spec.type is bool:
            widget = QCheckBox()
            widget.toggled.connect(lambda on: self.edited.emit(spec.name, bool(on)))
            return widget
        bounded = spec.minimum is not None and spec.maximum is not None
        if spec.type is int:
            widget = QLabeledSlider(Qt.Orientation.Horizontal) if bounded else QSpinBox()
            widget.setRange(int(spec.minimum if spec.minimum is not None else -1_000_000),
                            int(spec.maximum if spec.maximum is not None else 1_000_000))
            widget.valueChanged.connect(lambda v: self.edited.emit(spec.name, int(v)))
            return widget
        if bounded:
            widget = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            widget.setRange(float(spec.minimum), float(spec.maximum))
            widget.setDecimals(3)
        else:
            decimals = spin_decimals(spec)
            widget = QDoubleSpinBox(decimals=decimals, singleStep=0.05 if decimals == 4 else spec.default)
            widget.setRange(float(spec.minimum if spec.minimum is not None else -1e6),
                            float(spec.maximum if spec.maximum is not None else 1e6))
        digits = max(6, widget.decimals())
        widget.valueChanged.connect(lambda v: self.edited.emit(spec.name, round(float(v), digits)))
        return widget

    def show_setting(self, setting) -> None:
        """Show without emitting: the state keeps its exact value, whatever the widget rounds."""
        shown = setting if setting is not None else starting_value(self.spec)
        self.current = shown
        scalar = shown is None or is_scalar(shown)
        self.value_widget.setVisible(scalar)
        self.summary.setVisible(not scalar)
        self.summary.setStyleSheet("")
        self.reset_button.setEnabled(setting is not None)
        if not scalar:
            self.summary.setText(describe_setting(shown))
            self.summary.setToolTip(describe_setting(shown))
            return
        if self.spec.type is Path:
            self._show_path(shown)
            return
        try:
            value = self.spec.validate(shown)
        except ValueError:  # a value the engine will refuse: show it as written, not a widget
            self.value_widget.setVisible(False)
            self.summary.setVisible(True)
            self.summary.setText(f"{shown!r} (not a valid {self.spec.type.__name__})")
            return
        self.value_widget.blockSignals(True)
        if isinstance(self.value_widget, QCheckBox):
            self.value_widget.setChecked(bool(value))
        else:
            self.value_widget.setValue(value)
        self.value_widget.blockSignals(False)

    def _show_path(self, shown: str | None) -> None:
        """The path as written; a file that is not there is flagged beside it, never hidden."""
        self.value_widget.setValue(shown or "")
        problem = path_problem(self.spec, shown) if shown else None
        self.summary.setVisible(problem is not None)
        self.summary.setStyleSheet(f"color: {INVALID_COLOUR};")
        self.summary.setText("⚠ no such file" if problem else "")
        self.summary.setMinimumWidth(self.summary.fontMetrics().horizontalAdvance(self.summary.text()) + 4)
        self.value_widget.edit.setStyleSheet(f"color: {INVALID_COLOUR};" if problem else "")
        self.summary.setToolTip(problem or "")
        self.value_widget.edit.setToolTip(problem or self.spec.help)

    def edit_curve(self) -> None:
        dialog = SettingEditorDialog(f"{self.spec.name}: per layer and by tensor name",
                                     self.current, self.spec, self.num_layers, self)
        if dialog.exec() == SettingEditorDialog.DialogCode.Accepted:
            self.edited.emit(self.spec.name, dialog.result_setting())
        dialog.deleteLater()
