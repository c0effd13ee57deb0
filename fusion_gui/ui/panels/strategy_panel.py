"""Pick a merge method; its parameter form is generated from the registry's ParamSpecs.

Global parameters get a row each (param_row.py: a labelled slider for bounded numbers, a spin box
or a check box, and a "Per layer…" button for curves and tensor-name rules; a file (a Path
parameter) gets a line edit with "Browse…"). Per-model parameters live in a table.
Widgets ask the merge session to change only what the user touches.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QFormLayout, QGroupBox, QHeaderView, QLabel, QPushButton, QSpinBox,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from fusion_gui.engine.merge.recipe import DTYPES
from fusion_gui.session.merge import MergeSession, unknown_sentence
from fusion_gui.session.merge_state import is_scalar, starting_value
from fusion_gui.ui.panels.param_row import INVALID_COLOUR, ParamRow, ask_file, path_problem
from fusion_gui.ui.panels.setting_editor import (
    SettingEditorDialog, describe_setting, format_value, parse_setting,
)


def methods() -> dict:
    from fusion_gui.engine.methods import registry

    return dict(registry())


def find_method(name: str):
    try:
        return methods().get(name)
    except ImportError:
        return None


def base_rule(method) -> str:
    count = (f"exactly {method.min_models}" if method.max_models == method.min_models
             else f"{method.min_models} or more" if method.max_models is None
             else f"{method.min_models} to {method.max_models}")
    noun = "model" if method.max_models == 1 else "models"
    base = {"required": " plus a base", "optional": ", base optional", "none": ", no base"}[method.base]
    return f"Takes {count} {noun}{base}."


class StrategyPanel(QWidget):
    message = Signal(str)

    def __init__(self, document: MergeSession, layer_count=lambda: None, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.layer_count = layer_count
        self._rows: dict[str, ParamRow] = {}

        self.method_combo = QComboBox()
        for name, method in sorted(methods().items(), key=lambda kv: kv[1].pretty_name.lower()):
            self.method_combo.addItem(method.pretty_name, name)
        self.method_combo.currentIndexChanged.connect(
            lambda _: self.set_method(self.method_combo.currentData()))
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setOpenExternalLinks(True)
        self.slices_note = QLabel("This recipe uses slices: its layer ranges are kept as they are "
                                  "and shown in the YAML view.")
        self.slices_note.setWordWrap(True)
        self.slices_note.setStyleSheet("color: #8a5a00;")
        self.unknown_note = QLabel()  # parameters the method does not take: never dropped without a word
        self.unknown_note.setWordWrap(True)
        self.unknown_note.setStyleSheet("color: #8a5a00;")
        self.unknown_button = QPushButton("Remove them")
        self.unknown_button.clicked.connect(lambda: self.document.drop_unknown_parameters())

        self.global_box = QGroupBox("Parameters")
        self.global_form = QFormLayout(self.global_box)
        self.model_box = QGroupBox("Per-model parameters")
        self.model_table = QTableWidget()
        self.model_table.verticalHeader().setVisible(False)
        self.model_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.model_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.model_table.itemChanged.connect(self._model_cell_edited)
        self.model_table.currentCellChanged.connect(lambda *_: self._update_cell_button())
        self.model_curve_button = QPushButton("Per layer / by tensor name…")
        self.model_curve_button.clicked.connect(self.edit_model_cell_curve)
        model_layout = QVBoxLayout(self.model_box)
        model_layout.addWidget(self.model_table)
        model_layout.addWidget(self.model_curve_button, alignment=Qt.AlignmentFlag.AlignRight)

        self.dtype_combo = QComboBox()
        self.dtype_combo.addItem("Same as the models", None)
        for dtype in DTYPES:
            self.dtype_combo.addItem(dtype, dtype)
        self.dtype_combo.currentIndexChanged.connect(self._dtype_edited)
        self.seed_box = QSpinBox(minimum=-1, maximum=2**31 - 1)
        self.seed_box.setSpecialValueText("none")
        self.seed_box.valueChanged.connect(self._seed_edited)
        extra = QFormLayout()
        extra.addRow("Compute dtype", self.dtype_combo)
        extra.addRow("Random seed", self.seed_box)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QFormLayout()
        top.addRow("Method", self.method_combo)
        layout.addLayout(top)
        layout.addWidget(self.description)
        layout.addWidget(self.slices_note)
        layout.addWidget(self.unknown_note)
        layout.addWidget(self.unknown_button, alignment=Qt.AlignmentFlag.AlignRight)
        layout.addWidget(self.global_box)
        layout.addWidget(self.model_box)
        layout.addLayout(extra)
        layout.addStretch(1)
        document.changed.connect(self._on_document_changed)
        self.refresh()

    # --- API ------------------------------------------------------------------------------

    def set_method(self, name: str) -> None:
        method = find_method(name)
        if method is None or name == self.document.state.method and self._rows_match(method):
            return
        self.document.set_method(name)  # origin None: everyone rebuilds, this panel included
        if not self._rows_match(method):  # same method, stale rows: nothing changed, rebuild anyway
            self.refresh()

    def set_global(self, name: str, setting) -> None:
        self.document.set_global(name, setting, origin=self)
        row = self._rows.get(name)
        if row is None:
            return
        if setting is None or not is_scalar(setting) or row.spec.type is Path:
            row.show_setting(setting)  # the widget changes shape; a dragged slider never does
        else:
            row.current = setting
            row.reset_button.setEnabled(True)

    def set_model_param(self, ref: str, name: str, setting) -> None:
        self.document.set_model_setting(ref, name, setting)

    # --- view ------------------------------------------------------------------------------

    def _rows_match(self, method) -> bool:
        return set(self._rows) == {p.name for p in method.global_params}

    def _on_document_changed(self, origin: object) -> None:
        if origin is not self:
            self.refresh()

    def refresh(self) -> None:
        state = self.document.state
        method = find_method(state.method)
        index = self.method_combo.findData(state.method)
        self.method_combo.blockSignals(True)
        self.method_combo.setCurrentIndex(index)
        self.method_combo.blockSignals(False)
        self.slices_note.setVisible(state.uses_slices)
        unknown = self.document.unknown_parameters()
        self.unknown_note.setText(unknown_sentence(unknown, state.method) if unknown else "")
        self.unknown_note.setVisible(bool(unknown))
        self.unknown_button.setVisible(bool(unknown))
        if method is None:
            self.description.setText(f"Unknown merge method '{state.method}'.")
            return
        link = f' <a href="{method.reference}">Reference</a>' if method.reference else ""
        self.description.setText(f"{method.description} {base_rule(method)}{link}".strip())
        self._build_global_rows(method)
        self._build_model_table(method)
        self.dtype_combo.blockSignals(True)
        self.dtype_combo.setCurrentIndex(max(0, self.dtype_combo.findData(state.dtype)))
        self.dtype_combo.blockSignals(False)
        self.seed_box.blockSignals(True)
        self.seed_box.setValue(-1 if state.random_seed is None else state.random_seed)
        self.seed_box.blockSignals(False)
        self.seed_box.setEnabled(method.random or state.random_seed is not None)

    def _build_global_rows(self, method) -> None:
        while self.global_form.rowCount():
            self.global_form.removeRow(0)
        self._rows = {}
        layers = self.layer_count()
        for spec in method.global_params:
            setting = self.document.state.global_setting(spec.name)
            row = ParamRow(spec, setting, layers)
            row.edited.connect(self.set_global)
            label = QLabel(spec.name)
            label.setToolTip(spec.help)
            self.global_form.addRow(label, row)
            self._rows[spec.name] = row
        self.global_box.setVisible(bool(method.global_params))

    def _build_model_table(self, method) -> None:
        state = self.document.state
        specs = method.model_params
        refs = state.refs_base_first()
        table = self.model_table
        table.blockSignals(True)
        table.clear()
        table.setColumnCount(1 + len(specs))
        table.setHorizontalHeaderLabels(["Model"] + [s.name for s in specs])
        table.setRowCount(len(refs))
        for row, ref in enumerate(refs):
            is_base = ref == state.base_model
            name = QTableWidgetItem(Path(ref).name + ("  (base)" if is_base else ""))
            name.setFlags(Qt.ItemFlag.ItemIsEnabled)
            name.setToolTip(ref)
            table.setItem(row, 0, name)
            for column, spec in enumerate(specs, start=1):
                if is_base and not spec.applies_to_base:
                    item = QTableWidgetItem("—")
                    item.setFlags(Qt.ItemFlag.NoItemFlags)
                else:
                    item = self._model_cell(spec, state.model_setting(ref, spec.name),
                                            state.global_setting(spec.name))
                item.setData(Qt.ItemDataRole.UserRole, (ref, spec.name))
                table.setItem(row, column, item)
        table.blockSignals(False)
        self.model_box.setVisible(bool(specs))
        self.model_table.setFixedHeight(min(240, 30 + 28 * max(1, len(refs))))

    def _model_cell(self, spec, own, inherited) -> QTableWidgetItem:
        shown = own if own is not None else inherited if inherited is not None else starting_value(spec)
        text = "" if shown is None else format_value(shown) if is_scalar(shown) else describe_setting(shown)
        item = QTableWidgetItem(text)
        if own is None:
            item.setForeground(self.palette().placeholderText())
            item.setToolTip("Not set for this model: the global value or the default applies.")
        problem = path_problem(spec, shown) if spec.type is Path and isinstance(shown, str) else None
        if problem:  # a file that is not there: shown as written, in red
            item.setForeground(QColor(INVALID_COLOUR))
            item.setToolTip(problem)
        return item

    def _current_spec(self):
        item = self.model_table.currentItem()
        key = item.data(Qt.ItemDataRole.UserRole) if item else None
        method = find_method(self.document.state.method)
        return (key, method.param(key[1])) if key and method is not None else (None, None)

    def _update_cell_button(self) -> None:
        _, spec = self._current_spec()
        is_file = spec is not None and spec.type is Path
        self.model_curve_button.setText("Choose file…" if is_file else "Per layer / by tensor name…")

    # --- edits -----------------------------------------------------------------------------

    def _model_cell_edited(self, item: QTableWidgetItem) -> None:
        key = item.data(Qt.ItemDataRole.UserRole)
        method = find_method(self.document.state.method)
        if not key or method is None:
            return
        ref, name = key
        text = item.text().strip()
        spec = method.param(name)
        try:
            if spec.type is Path:  # a path as typed: a file that is not there is flagged, not refused
                setting = text or None
            else:
                setting = None if text == "" else parse_setting(text, spec)
        except ValueError as err:
            self.message.emit(str(err))
            QTimer.singleShot(0, self.refresh)  # not while the table is emitting
            return
        self.document.set_model_setting(ref, name, setting, origin=self)
        QTimer.singleShot(0, self.refresh)

    def edit_model_cell_curve(self) -> None:
        key, spec = self._current_spec()
        if key is None:
            self.message.emit("Select a per-model parameter cell first.")
            return
        ref, name = key
        if spec.type is Path:
            path = ask_file(self, f"{name} for {Path(ref).name}")
            if path:
                self.set_model_param(ref, name, path)
            return
        current = self.document.state.model_setting(ref, name)
        if current is None:
            current = self.document.state.global_setting(name)
        if current is None:
            current = starting_value(spec)
        dialog = SettingEditorDialog(f"{name} for {Path(ref).name}", current, spec, self.layer_count(), self)
        if dialog.exec() == SettingEditorDialog.DialogCode.Accepted:
            self.set_model_param(ref, name, dialog.result_setting())
        dialog.deleteLater()

    def _dtype_edited(self) -> None:
        self.document.set_dtype(self.dtype_combo.currentData(), origin=self)

    def _seed_edited(self, value: int) -> None:
        self.document.set_seed(None if value < 0 else value, origin=self)
