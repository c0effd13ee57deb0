"""Edit one parameter setting the way mergekit spells it: a value, a per-layer curve, or rules
by tensor name. The preview evaluates the setting with the engine's own evaluate_setting, so
what it shows at each layer is exactly what the merge will use.
"""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
import yaml
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QDialogButtonBox, QDoubleSpinBox, QHBoxLayout, QHeaderView,
    QLabel, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.merge.recipe import recipe_from_dict
from fusion_gui.engine.merge.settings import Setting, evaluate_setting
from fusion_gui.ui.plots.layer_axis import LayerAxis
from fusion_gui.ui.widgets.number_boxes import decimals_for

# Substrings that pick tensor groups in every common architecture (Llama's self_attn, GPT-2's attn).
ATTENTION_FILTER = "attn"
MLP_FILTER = "mlp"
FALLBACK_LABEL = "(every other tensor)"


def layer_positions(num_layers: int) -> list[float]:
    """Where each layer sits along a gradient list: layer i of N at i / (N - 1), as the planner
    does (a single layer sits at 1)."""
    if num_layers <= 1:
        return [1.0]
    return [i / (num_layers - 1) for i in range(num_layers)]


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def describe_setting(setting: Setting) -> str:
    """One short line: '0.5', 'per layer 0 → 0.5 → 1', 'attn: 0.3; mlp: 0.7; else 0.5'."""
    if isinstance(setting, list) and setting and isinstance(setting[0], dict):
        parts = [f"{rule.get('filter') or 'else'}: {describe_setting(rule['value'])}" for rule in setting]
        return "; ".join(parts)
    if isinstance(setting, list):
        return "per layer " + " → ".join(format_value(v) for v in setting)
    return format_value(setting)


def parse_setting(text: str | Any, spec=None) -> Setting:
    """Text (YAML: '0.5', '[0, 1]', '0, 0.5, 1' or filter rules) -> a checked setting.

    Raises ValueError with a sentence fit for the user.
    """
    value = text
    if isinstance(text, str):
        stripped = text.strip()
        if not stripped:
            raise ValueError("Enter a value.")
        if "," in stripped and not stripped.startswith(("[", "{", "-")):
            stripped = f"[{stripped}]"
        try:
            value = yaml.safe_load(stripped)
        except yaml.YAMLError:
            raise ValueError(f"'{text}' is not a number or a list of numbers.") from None
    name = spec.name if spec is not None else "value"
    try:
        setting = recipe_from_dict({"merge_method": "check", "models": ["m"],
                                    "parameters": {name: value}}).parameters[name]
    except InputError as err:
        raise ValueError(str(err)) from None
    if spec is not None:
        for leaf in _leaves(setting):
            spec.validate(leaf)
            if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
                if spec.minimum is not None and leaf < spec.minimum:
                    raise ValueError(f"{spec.name} must be at least {format_value(spec.minimum)}.")
                if spec.maximum is not None and leaf > spec.maximum:
                    raise ValueError(f"{spec.name} must be at most {format_value(spec.maximum)}.")
    return setting


def _leaves(setting: Setting):
    if isinstance(setting, list):
        for item in setting:
            yield from _leaves(item["value"] if isinstance(item, dict) else item)
    else:
        yield setting


class SettingEditorDialog(QDialog):
    """Rules by tensor name (first match wins), each a value or anchors across the layers."""

    def __init__(self, title: str, setting: Setting, spec=None, num_layers: int | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(640, 600)
        self.spec = spec
        self.num_layers = max(1, num_layers or 8)
        self._result: Setting | None = None

        self.rules = QTableWidget(0, 2)
        self.rules.setHorizontalHeaderLabels(("Tensors whose name contains", "Value, or anchors across layers"))
        self.rules.verticalHeader().setVisible(False)
        self.rules.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.rules.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.rules.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.rules.setColumnWidth(0, 220)
        self.rules.itemChanged.connect(self._update_preview)
        self.rules.itemSelectionChanged.connect(self._select_row)

        add_row = QHBoxLayout()
        for label, text in (("+ Attention", ATTENTION_FILTER), ("+ MLP", MLP_FILTER), ("+ Custom", "")):
            button = QPushButton(label)
            button.clicked.connect(lambda _=False, t=text: self.add_rule(t, self._suggested_value()))
            add_row.addWidget(button)
        remove = QPushButton("Remove rule")
        remove.clicked.connect(self._remove_selected)
        add_row.addWidget(remove)
        add_row.addStretch(1)

        self.anchor_count = QSpinBox(minimum=1, maximum=16)
        self.anchor_count.setToolTip("How many anchors: 1 is one value for every layer; N anchors "
                                     "sit evenly from the first layer to the last.")
        self.anchor_count.valueChanged.connect(self._resample_anchors)
        self.anchor_row = QHBoxLayout()
        anchors = QHBoxLayout()
        anchors.addWidget(QLabel("Anchors:"))
        anchors.addWidget(self.anchor_count)
        anchors.addLayout(self.anchor_row, 1)
        self._anchor_boxes: list[QDoubleSpinBox] = []

        self.curve_plot = pg.PlotWidget(background="w", axisItems={"bottom": LayerAxis()})
        self.curve_plot.setFixedHeight(150)
        self.curve_plot.setMouseEnabled(False, False)
        self.curve_plot.hideButtons()
        self.curve_plot.setLabel("bottom", "layer")
        self.curve_plot.showGrid(x=True, y=True, alpha=0.3)
        self._curve = self.curve_plot.plot([], [], pen=pg.mkPen("#0072B2", width=2), symbol="o",
                                           symbolSize=7, symbolBrush="#0072B2", symbolPen=None)
        self.preview = QLabel()
        self.preview.setWordWrap(True)
        self.preview.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error = QLabel()
        self.error.setStyleSheet("color: #b3261e;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("The first rule whose text appears in a tensor's name gives its value. "
                                "Several numbers are anchors of a curve across the layers, as in "
                                "mergekit's gradient lists."))
        layout.addWidget(self.rules, 1)
        layout.addLayout(add_row)
        layout.addLayout(anchors)
        layout.addWidget(self.curve_plot)
        layout.addWidget(self.preview)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.set_setting(setting)

    # --- setting <-> rows ------------------------------------------------------------------

    def set_setting(self, setting: Setting) -> None:
        self.rules.blockSignals(True)
        self.rules.setRowCount(0)
        self.rules.blockSignals(False)
        if isinstance(setting, list) and setting and isinstance(setting[0], dict):
            for rule in setting:
                self.add_rule(rule.get("filter"), format_value(rule["value"]))
            if any(rule.get("filter") in (None, "*") for rule in setting):
                return
            self.add_rule(None, "")
        else:
            self.add_rule(None, format_value(setting))

    def add_rule(self, filter_text: str | None, value_text: str) -> None:
        fallback_row = self._fallback_row()
        row = self.rules.rowCount() if filter_text is None or fallback_row is None else fallback_row
        self.rules.insertRow(row)
        name = QTableWidgetItem(FALLBACK_LABEL if filter_text is None else filter_text)
        if filter_text is None:
            name.setFlags(name.flags() & ~Qt.ItemFlag.ItemIsEditable)
            name.setData(Qt.ItemDataRole.UserRole, "fallback")
        self.rules.setItem(row, 0, name)
        self.rules.setItem(row, 1, QTableWidgetItem(value_text))
        self.rules.selectRow(row)
        if filter_text == "":
            self.rules.editItem(name)

    def _suggested_value(self) -> str:
        """What a new rule starts at: the value every other tensor gets, else the method's default."""
        fallback = self._fallback_row()
        values = self._row_values(fallback) if fallback is not None else None
        if values is not None:
            return format_value(values[0] if len(values) == 1 else values)
        default = getattr(self.spec, "default", None)
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        return format_value(default) if numeric else ""

    def _fallback_row(self) -> int | None:
        for row in range(self.rules.rowCount()):
            if self.rules.item(row, 0).data(Qt.ItemDataRole.UserRole) == "fallback":
                return row
        return None

    def _remove_selected(self) -> None:
        row = self.rules.currentRow()
        if row >= 0 and row != self._fallback_row():
            self.rules.removeRow(row)

    def setting(self) -> Setting:
        """The edited setting; ValueError when a row does not parse."""
        rules = []
        for row in range(self.rules.rowCount()):
            value_text = self.rules.item(row, 1).text().strip()
            is_fallback = row == self._fallback_row()
            if not value_text and is_fallback:
                continue
            filter_text = None if is_fallback else self.rules.item(row, 0).text().strip()
            if not is_fallback and not filter_text:
                raise ValueError(f"Rule {row + 1} needs text to look for in tensor names.")
            rules.append((filter_text, parse_setting(value_text, self.spec)))
        if not rules:
            raise ValueError("Give at least one value.")
        if len(rules) == 1 and rules[0][0] is None:
            return rules[0][1]
        return [{"filter": f, "value": v} for f, v in rules]

    def accept(self) -> None:
        try:
            self._result = self.setting()
        except ValueError as err:
            self.error.setText(str(err))
            return
        super().accept()

    def result_setting(self) -> Setting | None:
        return self._result

    # --- anchors and preview ----------------------------------------------------------------

    def _row_values(self, row: int) -> list | None:
        if row < 0 or row >= self.rules.rowCount():
            return None
        try:
            value = parse_setting(self.rules.item(row, 1).text(), None)
        except ValueError:
            return None
        values = value if isinstance(value, list) else [value]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        return values if numeric else None

    def _select_row(self) -> None:
        """Anchors show exactly the row's numbers; a row without numbers shows no anchor, never a
        made-up 0 that OK would then refuse."""
        values = self._row_values(self.rules.currentRow()) or []
        self.anchor_count.blockSignals(True)
        self.anchor_count.setValue(max(1, len(values)))
        self.anchor_count.setEnabled(bool(values))
        self.anchor_count.blockSignals(False)
        self._build_anchor_boxes(values)
        self._update_preview()

    def _build_anchor_boxes(self, values: list[float]) -> None:
        for box in self._anchor_boxes:
            self.anchor_row.removeWidget(box)
            box.hide()
            box.deleteLater()
        self._anchor_boxes = []
        low = self.spec.minimum if self.spec is not None and self.spec.minimum is not None else -1e6
        high = self.spec.maximum if self.spec is not None and self.spec.maximum is not None else 1e6
        decimals = max([decimals_for(v) for v in values], default=4)  # 1e-6 is not shown as 0.0000
        for value in values:
            box = QDoubleSpinBox(minimum=low, maximum=high, decimals=decimals, singleStep=0.05)
            box.setValue(float(value))
            box.valueChanged.connect(self._anchors_edited)
            self.anchor_row.addWidget(box)
            self._anchor_boxes.append(box)

    def _resample_anchors(self, count: int) -> None:
        """Keep the curve's shape when the number of anchors changes."""
        old = [box.value() for box in self._anchor_boxes]
        if not old:  # a row without numbers: there is no curve to resample
            return
        new = [float(evaluate_setting(old, "", t)) for t in layer_positions(count)] if len(old) > 1 else old * count
        self._build_anchor_boxes(new)
        self._anchors_edited()

    def _anchors_edited(self) -> None:
        row = self.rules.currentRow()
        values = [box.value() for box in self._anchor_boxes]
        if row < 0 or not values:
            return
        self.rules.item(row, 1).setText(format_value(values[0] if len(values) == 1 else values))

    def _update_preview(self, *_args) -> None:
        values = self._row_values(self.rules.currentRow())
        if values is None:
            self.preview.setText("Value at each layer: (enter numbers to see the curve)")
            self._curve.setData([], [])
            return
        at_layers = [evaluate_setting(values if len(values) > 1 else values[0], "", t)
                     for t in layer_positions(self.num_layers)]
        self._curve.setData(list(range(self.num_layers)), [float(v) for v in at_layers])
        self.preview.setText("Value at each layer: " + "   ".join(
            f"{i}: {float(v):.3g}" for i, v in enumerate(at_layers)))
        self.error.clear()
