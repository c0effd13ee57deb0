"""Number boxes for values that span decades: 5e-5 reads as "5e-5", not "0.0000500"."""

from __future__ import annotations

import math

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox

from fusion_gui.formatting import format_scientific

_TYPING = set("0123456789+-.eE")


def decimals_for(value: float, usual: int = 4) -> int:
    """Decimals that show a small value (1e-6 as 0.00000100) rather than 0.0000; `usual` otherwise."""
    value = abs(float(value))
    if 0 < value < 10 ** -(usual - 1):
        return min(12, 2 - math.floor(math.log10(value)))
    return usual


class ScientificSpinBox(QDoubleSpinBox):
    """Shows and accepts scientific notation; the arrows step the leading digit (5e-5 -> 6e-5)."""

    def __init__(self, value: float, low: float, high: float, parent=None):
        super().__init__(parent)
        self.setDecimals(16)  # Qt rounds values to this many decimals: keep 1e-8 exact
        self.setRange(low, high)
        self.setValue(value)

    def _bare(self, text: str) -> str:
        if self.prefix() and text.startswith(self.prefix()):
            text = text[len(self.prefix()):]
        if self.suffix() and text.endswith(self.suffix()):
            text = text[: -len(self.suffix())]
        return text.strip()

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt's names
        return format_scientific(value)

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(self._bare(text))
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        bare = self._bare(text)
        if not bare or set(bare) - _TYPING:
            state = QValidator.State.Intermediate if not bare else QValidator.State.Invalid
            return state, text, pos
        try:
            value = float(bare)
        except ValueError:  # "5e-" while typing
            return QValidator.State.Intermediate, text, pos
        inside = self.minimum() <= value <= self.maximum()
        return (QValidator.State.Acceptable if inside else QValidator.State.Intermediate), text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802
        value = self.value()
        for _ in range(abs(steps)):
            value = _step_leading_digit(value, up=steps > 0)
        self.setValue(min(self.maximum(), max(self.minimum(), value)))


def _step_leading_digit(value: float, up: bool) -> float:
    """One unit of the leading digit: 5e-5 -> 6e-5 up, 1e-4 -> 9e-5 down."""
    if value <= 0:
        return value
    exponent = math.floor(math.log10(value) + 1e-9)
    unit = 10.0 ** exponent
    if not up and math.isclose(value, unit, rel_tol=1e-9):
        unit /= 10
    stepped = value + unit if up else value - unit
    return float(f"{stepped:.12g}")
