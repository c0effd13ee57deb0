"""The Distill view's form widgets: path rows with Browse…, spin boxes, and one row per loss."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QHBoxLayout, QLineEdit, QPushButton, QSpinBox, QWidget

from fusion_gui.ui.widgets.file_dialogs import ask_folder, ask_open_file
from fusion_gui.ui.widgets.number_boxes import ScientificSpinBox


def spin(value: float, low: float | None, high: float | None, decimals: int = 4, step: float = 0.1):
    box = QDoubleSpinBox(decimals=decimals, singleStep=step)
    box.setRange(-1e3 if low is None else low, 1e3 if high is None else high)  # narrow boxes
    box.setValue(value)
    return box


def sci_spin(value: float, low: float | None, high: float | None) -> ScientificSpinBox:
    """For values that span decades (a learning rate): shown as 5e-5, not 0.0000500."""
    return ScientificSpinBox(value, 0.0 if low is None else low, 1e3 if high is None else high)


def int_spin(value: int, low: int, high: int = 10_000_000, special: str | None = None) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    if special:
        box.setSpecialValueText(special)
    return box


class PathRow(QWidget):
    """A line edit with Browse… for a folder (or a file)."""

    def __init__(self, placeholder: str, title: str, folder: bool = True, file_filter: str = "",
                 save: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self.edit = QLineEdit(placeholderText=placeholder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: self._browse(title, folder, file_filter))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.edit, 1)
        lay.addWidget(browse)

    def _browse(self, title: str, folder: bool, file_filter: str) -> None:
        if folder:
            path = ask_folder(self, title, self.edit.text())
        else:
            path = ask_open_file(self, title, self.edit.text(), file_filter)
        if path:
            self.edit.setText(path)

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, text: str) -> None:  # noqa: N802 - Qt style, like the edit it wraps
        self.edit.setText(str(text))


class LossRow:
    """The widgets of one loss: a checkbox, its weight, and a spin box per parameter."""

    def __init__(self, info, enabled: bool, weight: float):
        self.info = info
        self.check = QCheckBox(info.label)
        self.check.setToolTip(info.help)
        self.check.setChecked(enabled)
        self.weight = spin(weight, 0.0, 1e3, decimals=3)
        self.weight.setToolTip(f"Weight of {info.label} in the total loss.")
        self.params = {}
        for p in info.params:
            small = 0 < p.default < 0.01
            box = sci_spin(p.default, p.low, p.high) if small else spin(p.default, p.low, p.high, 3, 0.05)
            box.setPrefix(f"{p.name} ")
            box.setToolTip(p.help)
            self.params[p.name] = box
        self.check.toggled.connect(self._sync)
        self._sync(enabled)

    def _sync(self, on: bool) -> None:
        self.weight.setEnabled(on)
        for box in self.params.values():
            box.setEnabled(on)

    def value(self):
        if not self.params:
            return self.weight.value()
        return {"weight": self.weight.value(), **{k: b.value() for k, b in self.params.items()}}
