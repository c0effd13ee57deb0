"""The Search tab's form: the starting recipe (copied from the Merge view), what to tune and between
which bounds, the objectives, held-out share, budget, sampler and storage. Every widget writes one
setting of the SearchSession through `set`; a change from elsewhere (a loaded file) refills them."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QSpinBox,
    QTableWidget, QVBoxLayout, QWidget,
)

from fusion_gui.engine.evaluate.demo import SKILLS
from fusion_gui.session.search import SAMPLERS, SCOPES, SearchSession
from fusion_gui.ui.panels.distill_form import PathRow

NO_SECOND = "(none)"


def _spin(value: float, low: float, high: float, decimals: int = 3, step: float = 0.05) -> QDoubleSpinBox:
    box = QDoubleSpinBox(decimals=decimals, minimum=low, maximum=high, singleStep=step)
    box.setValue(value)
    return box


class SearchForm(QWidget):
    from_merge_requested = Signal()
    load_requested = Signal()
    save_requested = Signal()

    def __init__(self, session: SearchSession, objective_choices=lambda: (), parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.objective_choices = objective_choices  # the Evaluate tab's task files, beside the demo skills
        self.numeric_params: list[str] = []

        self.method_label = QLabel("No starting recipe yet: set up a merge in the Merge view, then copy it here.")
        self.method_label.setWordWrap(True)
        from_merge = QPushButton("Search from the Merge view")
        from_merge.setToolTip("Copy the Merge view's models, base, method and fixed values as the starting recipe.")
        from_merge.clicked.connect(self.from_merge_requested)

        self.tune_table = QTableWidget(0, 4)
        self.tune_table.setHorizontalHeaderLabels(["Parameter", "Scope", "Low", "High"])
        self.tune_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.tune_table.verticalHeader().setVisible(False)
        self.tune_table.setMinimumHeight(90)
        add = QPushButton("Add parameter")
        add.clicked.connect(self._add_tune_row)
        remove = QPushButton("Remove")
        remove.clicked.connect(self._remove_tune_row)
        self.layer_groups = QSpinBox(minimum=1, maximum=64)
        self.layer_groups.setToolTip("Per-layer-group parameters get one value per group, interpolated across "
                                     "the layers (mergekit-evolve's layer granularity).")

        self.objective_1 = QComboBox(editable=True)
        self.objective_2 = QComboBox(editable=True)
        self.objective_1.setToolTip("What the search maximizes (a demo skill's accuracy or a task file's score).")
        self.objective_2.setToolTip("A second objective makes the search find a Pareto front.")
        self.held_out = _spin(0.3, 0.0, 0.9, 2)
        self.held_out.setToolTip("Share of each task's examples the search never sees: the best candidates are "
                                 "re-scored on them.")
        self.trials = QSpinBox(minimum=1, maximum=100_000)
        self.minutes = _spin(10.0, 0.0, 10_000.0, 1, 1.0)
        self.minutes.setSpecialValueText("no limit")
        self.sampler = QComboBox()
        for key, text in SAMPLERS.items():
            self.sampler.addItem(text, key)
        self.grid_points = QSpinBox(minimum=2, maximum=100)
        self.grid_points.setToolTip("Values per parameter on a grid (coarse ones are tried first).")
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.storage = QLineEdit(placeholderText="default: search.sqlite in the output folder")
        self.storage.setToolTip("An optuna storage URL (sqlite:///file, postgresql://…): workers sharing it share "
                                "the study; the app shows all their trials.")
        self.study_name = QLineEdit()
        self.output_row = PathRow("Output folder: the study, best recipe and trials CSV", "Search output folder")

        tune_buttons = QHBoxLayout()
        tune_buttons.addWidget(add)
        tune_buttons.addWidget(remove)
        tune_buttons.addStretch(1)
        tune_buttons.addWidget(QLabel("Layer groups"))
        tune_buttons.addWidget(self.layer_groups)
        budget = QHBoxLayout()
        budget.addWidget(self.trials)
        budget.addWidget(QLabel("trials, at most"))
        budget.addWidget(self.minutes)
        budget.addWidget(QLabel("minutes"))
        sampler = QHBoxLayout()
        sampler.addWidget(self.sampler, 1)
        sampler.addWidget(QLabel("grid points"))
        sampler.addWidget(self.grid_points)
        sampler.addWidget(QLabel("seed"))
        sampler.addWidget(self.seed)
        files = QHBoxLayout()
        load = QPushButton("Load settings…")
        load.clicked.connect(self.load_requested)
        save = QPushButton("Save settings…")
        save.clicked.connect(self.save_requested)
        files.addWidget(load)
        files.addWidget(save)
        files.addStretch(1)

        form = QFormLayout()
        form.addRow(from_merge)
        form.addRow(self.method_label)
        form.addRow(QLabel("Tune"))
        form.addRow(self.tune_table)
        form.addRow(tune_buttons)
        form.addRow("Objective", self.objective_1)
        form.addRow("Second objective", self.objective_2)
        form.addRow("Held-out share", self.held_out)
        form.addRow("Budget", budget)
        form.addRow("Sampler", sampler)
        form.addRow("Storage", self.storage)
        form.addRow("Study name", self.study_name)
        form.addRow("Output", self.output_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(files)
        layout.addStretch(1)

        for box, key in ((self.layer_groups, "layer_groups"), (self.trials, "trials"),
                         (self.grid_points, "grid_points"), (self.seed, "seed")):
            box.valueChanged.connect(lambda v, key=key: self.session.set(key, int(v), self))
        for box, key in ((self.held_out, "held_out"), (self.minutes, "minutes")):
            box.valueChanged.connect(lambda v, key=key: self.session.set(key, float(v), self))
        self.sampler.currentIndexChanged.connect(
            lambda _: self.session.set("sampler", self.sampler.currentData(), self))
        self.storage.editingFinished.connect(lambda: self.session.set("storage", self.storage.text().strip(), self))
        self.study_name.editingFinished.connect(
            lambda: self.session.set("study_name", self.study_name.text().strip() or "search", self))
        for combo in (self.objective_1, self.objective_2):
            combo.currentTextChanged.connect(lambda _: self._write_objectives())
        self.output_row.edit.textChanged.connect(lambda text: setattr(self.session, "out_dir", text.strip()))
        session.settings_changed.connect(lambda origin: origin is not self and self.refill())
        self.refill()

    # --- settings -> widgets ---------------------------------------------------------------
    def refill(self) -> None:
        s = self.session.settings
        widgets = (self.layer_groups, self.trials, self.grid_points, self.seed, self.held_out, self.minutes,
                   self.sampler, self.storage, self.study_name, self.objective_1, self.objective_2, self.tune_table)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.layer_groups.setValue(int(s["layer_groups"]))
            self.trials.setValue(int(s["trials"]))
            self.grid_points.setValue(int(s["grid_points"]))
            self.seed.setValue(int(s["seed"]))
            self.held_out.setValue(float(s["held_out"]))
            self.minutes.setValue(float(s["minutes"] or 0.0))
            self.sampler.setCurrentIndex(max(0, self.sampler.findData(s["sampler"])))
            self.storage.setText(str(s["storage"] or ""))
            self.study_name.setText(str(s["study_name"] or ""))
            self._fill_objectives()
            self._fill_tune()
        finally:
            for w in widgets:
                w.blockSignals(False)
        self._describe_recipe()

    def _fill_objectives(self) -> None:
        chosen = self.session.objectives
        choices = list(dict.fromkeys([*SKILLS, *self.objective_choices(), *chosen]))
        for combo, extra in ((self.objective_1, []), (self.objective_2, [NO_SECOND])):
            combo.clear()
            combo.addItems(extra + choices)
        self.objective_1.setCurrentText(chosen[0] if chosen else "")
        self.objective_2.setCurrentText(chosen[1] if len(chosen) > 1 else NO_SECOND)

    def _fill_tune(self) -> None:
        recipe = self.session.settings.get("recipe") or {}
        from fusion_gui.session.merge import find_method

        method = find_method(recipe.get("merge_method"))
        self.numeric_params = [p.name for p in (method.params if method else ()) if p.type in (int, float)]
        self.tune_table.setRowCount(0)
        for entry in self.session.settings.get("tune", []):
            self._add_tune_row(entry, write=False)

    def _describe_recipe(self) -> None:
        recipe = self.session.settings.get("recipe") or {}
        if not recipe:
            return
        models = [m.get("model", "?") if isinstance(m, dict) else str(m) for m in recipe.get("models") or []]
        names = ", ".join(str(m).rstrip("/").rsplit("/", 1)[-1] for m in models)
        base = str(recipe.get("base_model") or "none").rstrip("/").rsplit("/", 1)[-1]
        self.method_label.setText(f"Method {recipe.get('merge_method')}, base {base}, models {names}.")

    # --- widgets -> settings ---------------------------------------------------------------
    def _write_objectives(self) -> None:
        first = self.objective_1.currentText().strip()
        second = self.objective_2.currentText().strip()
        objectives = [o for o in (first, second) if o and o != NO_SECOND]
        self.session.set("objectives", list(dict.fromkeys(objectives)), self)

    def _add_tune_row(self, entry: dict | None = None, write: bool = True) -> None:
        entry = entry if isinstance(entry, dict) else {
            "parameter": self.numeric_params[0] if self.numeric_params else "weight", "scope": "model",
            "low": 0.0, "high": 1.0}
        row = self.tune_table.rowCount()
        self.tune_table.insertRow(row)
        name = QComboBox(editable=True)
        name.addItems(self.numeric_params)
        name.setCurrentText(str(entry.get("parameter", "")))
        scope = QComboBox()
        for key, text in SCOPES.items():
            scope.addItem(text, key)
        scope.setCurrentIndex(max(0, scope.findData(entry.get("scope", "global"))))
        low = _spin(float(entry.get("low", 0.0)), -1000.0, 1000.0)
        high = _spin(float(entry.get("high", 1.0)), -1000.0, 1000.0)
        for column, widget in enumerate((name, scope, low, high)):
            self.tune_table.setCellWidget(row, column, widget)
        name.currentTextChanged.connect(lambda _: self._write_tune())
        scope.currentIndexChanged.connect(lambda _: self._write_tune())
        low.valueChanged.connect(lambda _: self._write_tune())
        high.valueChanged.connect(lambda _: self._write_tune())
        if write:
            self._write_tune()

    def _remove_tune_row(self) -> None:
        row = self.tune_table.currentRow()
        self.tune_table.removeRow(row if row >= 0 else self.tune_table.rowCount() - 1)
        self._write_tune()

    def _write_tune(self) -> None:
        tune = []
        for row in range(self.tune_table.rowCount()):
            name, scope, low, high = (self.tune_table.cellWidget(row, c) for c in range(4))
            tune.append({"parameter": name.currentText().strip(), "scope": scope.currentData(),
                         "low": round(low.value(), 6), "high": round(high.value(), 6)})
        self.session.set("tune", tune, self)
