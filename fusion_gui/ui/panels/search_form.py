"""The Search tab's form: the starting recipe (copied from the Merge view), what to tune and between
which bounds, the objectives, held-out share, budget, sampler and storage. Every widget writes one
setting of the SearchSession through `set`; a change from elsewhere (a loaded file) refills them."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QSpinBox,
    QTableWidget, QVBoxLayout, QWidget,
)

from fusion_gui.engine.search.settings import SKILLS
from fusion_gui.session.search import SAMPLERS, SCOPES, SearchSession
from fusion_gui.ui.panels.distill_form import PathRow

NO_SECOND = "(none)"
NO_START = -1000.0  # the Start spin box's "none"
COMBINE = {"pareto": "a Pareto front", "mean": "their mean (one value)"}


def objective_text(item) -> str:
    """How the form names an objective: its task, and the text file perplexity reads."""
    if isinstance(item, dict):
        if item.get("file"):
            return f"{item['task']} on {item['file']}"
        return f"{item['task']}" + (f" ({item['metric']})" if item.get("metric") else "")
    return str(item)


def _spin(value: float, low: float, high: float, decimals: int = 3, step: float = 0.05) -> QDoubleSpinBox:
    box = QDoubleSpinBox(decimals=decimals, minimum=low, maximum=high, singleStep=step)
    box.setValue(value)
    return box



def _inline_row(*parts) -> QHBoxLayout:
    """Boxes and the words between them on one line ("40 searched, 60 held out"), left-aligned."""
    row = QHBoxLayout()
    for part in parts:
        row.addWidget(QLabel(part) if isinstance(part, str) else part)
    row.addStretch(1)
    return row

class SearchForm(QWidget):
    from_merge_requested = Signal()
    load_requested = Signal()
    save_requested = Signal()
    reopen_requested = Signal()

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

        self.tune_table = QTableWidget(0, 5)
        self.tune_table.setHorizontalHeaderLabels(["Parameter", "Scope", "Low", "High", "Start"])
        self.tune_table.horizontalHeaderItem(4).setToolTip(
            "Optional: the first trial's value (the Merge view's, when copied), so the best found is never worse "
            "than the recipe you had.")
        self.tune_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.tune_table.verticalHeader().setVisible(False)
        self.tune_table.setFixedHeight(112)  # three rows; more scroll
        add = QPushButton("Add parameter")
        add.clicked.connect(self._add_tune_row)
        remove = QPushButton("Remove")
        remove.clicked.connect(self._remove_tune_row)
        self.layer_granularity = QSpinBox(minimum=0, maximum=1024, specialValueText="whole model")
        self.layer_granularity.setToolTip("Layers per group for per-layer-group parameters: each group gets its "
                                          "own value (mergekit-evolve's layer granularity).")

        self.objective_1 = QComboBox()
        self.objective_2 = QComboBox()
        self.objective_1.setToolTip("What the search optimizes: a demo skill's accuracy, a task file's score from "
                                    "the Evaluate tab, or perplexity on its text file (lower is better).")
        self.objective_2.setToolTip("A second objective: the search finds a Pareto front (or their mean).")
        self.combine = QComboBox()
        for key, text in COMBINE.items():
            self.combine.addItem(text, key)
        self.examples = QSpinBox(minimum=1, maximum=1_000_000)
        self.examples.setToolTip("Examples per objective each trial is scored on.")
        self.held_out = QSpinBox(minimum=1, maximum=1_000_000)
        self.held_out.setToolTip("Examples the search never sees: the best candidates are re-scored on them.")
        self.trials = QSpinBox(minimum=0, maximum=100_000, specialValueText="no limit")
        self.minutes = _spin(10.0, 0.0, 100_000.0, 1, 1.0)
        self.minutes.setSpecialValueText("no limit")
        self.sampler = QComboBox()
        for key, text in SAMPLERS.items():
            self.sampler.addItem(text, key)
        self.grid_points = QSpinBox(minimum=2, maximum=100)
        self.grid_points.setToolTip("Values per parameter on a grid (the ends and middle first, then finer).")
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.device = QComboBox()
        self.device.addItems(("auto", "cpu", "cuda", "mps"))
        self.storage = QLineEdit(placeholderText="default: search.sqlite in the output folder")
        self.storage.setToolTip("An optuna storage URL (sqlite:///file, postgresql://…): workers sharing it share "
                                "the study; the app shows all their trials.")
        self.study_name = QLineEdit()
        self.output_row = PathRow("Output folder: the study, best recipe and trials CSV", "Search output folder")

        for combo in (self.objective_1, self.objective_2, self.sampler):  # long texts must not widen the form
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        tune_buttons = QHBoxLayout()
        tune_buttons.addWidget(add)
        tune_buttons.addWidget(remove)
        tune_buttons.addStretch(1)
        examples = _inline_row(self.examples, "searched,", self.held_out, "held out")
        budget = _inline_row(self.trials, "trials,", self.minutes, "minutes")
        sampler = QHBoxLayout()
        sampler.addWidget(self.sampler, 1)
        sampler.addWidget(QLabel("points"))
        sampler.addWidget(self.grid_points)
        run_on = QHBoxLayout()
        run_on.addWidget(self.device)
        run_on.addWidget(QLabel("seed"))
        run_on.addWidget(self.seed)
        run_on.addStretch(1)
        files = QHBoxLayout()
        load = QPushButton("Load settings…")
        load.clicked.connect(self.load_requested)
        save = QPushButton("Save settings…")
        save.clicked.connect(self.save_requested)
        reopen = QPushButton("Open a search folder…")
        reopen.setToolTip("A search started earlier (in this app or with `fusion-gui search`): its settings and "
                          "trials come back from its storage, and Resume continues it.")
        reopen.clicked.connect(self.reopen_requested)
        files.addWidget(load)
        files.addWidget(save)
        files.addWidget(reopen)
        files.addStretch(1)

        form = QFormLayout()
        form.addRow(from_merge)
        form.addRow(self.method_label)
        form.addRow(QLabel("Tune"))
        form.addRow(self.tune_table)
        form.addRow(tune_buttons)
        form.addRow("Layers per group", self.layer_granularity)
        form.addRow("Objective", self.objective_1)
        form.addRow("Second objective", self.objective_2)
        form.addRow("Two objectives give", self.combine)
        form.addRow("Examples", examples)
        form.addRow("Budget", budget)
        form.addRow("Sampler", sampler)
        form.addRow("Device", run_on)
        form.addRow("Storage", self.storage)
        form.addRow("Study name", self.study_name)
        form.addRow("Output", self.output_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(files)
        layout.addStretch(1)

        for box, key in ((self.layer_granularity, "layer_granularity"), (self.examples, "examples"),
                         (self.held_out, "held_out"), (self.grid_points, "grid_steps"), (self.seed, "seed")):
            box.valueChanged.connect(lambda v, key=key: self.session.set(key, int(v), self))
        self.trials.valueChanged.connect(lambda v: self.session.set_budget(self, trials=int(v) or None))
        self.minutes.valueChanged.connect(
            lambda v: self.session.set_budget(self, seconds=round(float(v) * 60, 3) or None))
        self.sampler.currentIndexChanged.connect(
            lambda _: self.session.set("sampler", self.sampler.currentData(), self))
        self.combine.currentIndexChanged.connect(
            lambda _: self.session.set("combine", self.combine.currentData(), self))
        self.device.currentTextChanged.connect(lambda text: self.session.set("device", text, self))
        self.storage.editingFinished.connect(
            lambda: self.session.set("storage", self.storage.text().strip() or None, self))
        self.study_name.editingFinished.connect(
            lambda: self.session.set("study_name", self.study_name.text().strip() or "search", self))
        for combo in (self.objective_1, self.objective_2):
            combo.currentIndexChanged.connect(lambda _: self._write_objectives())
        self.output_row.edit.textChanged.connect(lambda text: setattr(self.session, "out_dir", text.strip()))
        session.settings_changed.connect(self._on_settings_changed)
        self.refill()

    def _on_settings_changed(self, origin) -> None:
        if origin is not self:
            self.refill()
        self._enable_what_applies()

    def _enable_what_applies(self) -> None:
        """Grid points matter to a grid, the way two objectives combine only with two."""
        self.grid_points.setEnabled(self.session.settings.get("sampler") == "grid")
        self.combine.setEnabled(len(self.session.settings.get("objectives") or []) == 2)

    # --- settings -> widgets ---------------------------------------------------------------
    def refill(self) -> None:
        s = self.session.settings
        widgets = (self.layer_granularity, self.examples, self.held_out, self.trials, self.minutes, self.sampler,
                   self.grid_points, self.seed, self.device, self.combine, self.storage, self.study_name,
                   self.objective_1, self.objective_2, self.tune_table)
        for w in widgets:
            w.blockSignals(True)
        try:
            budget = s.get("budget") or {}
            self.layer_granularity.setValue(int(s["layer_granularity"]))
            self.examples.setValue(int(s["examples"]))
            self.held_out.setValue(int(s["held_out"]))
            self.trials.setValue(int(budget.get("trials") or 0))
            self.minutes.setValue(float(budget.get("seconds") or 0.0) / 60)
            self.sampler.setCurrentIndex(max(0, list(SAMPLERS).index(s["sampler"]) if s["sampler"] in SAMPLERS else 0))
            self.grid_points.setValue(int(s["grid_steps"]))
            self.seed.setValue(int(s["seed"]))
            self.device.setCurrentText(str(s["device"]))
            self.combine.setCurrentIndex(max(0, self.combine.findData(s["combine"])))
            self.storage.setText(str(s["storage"] or ""))
            self.study_name.setText(str(s["study_name"] or ""))
            self.fill_objectives()
            self._fill_tune()
        finally:
            for w in widgets:
                w.blockSignals(False)
        self._describe_recipe()
        self._enable_what_applies()

    def fill_objectives(self) -> None:
        """The choices: the demo skills, the Evaluate tab's task files and text file, and what is chosen;
        the second list leaves out the first objective (one objective twice is one objective)."""
        chosen = list(self.session.settings.get("objectives") or [])
        choices = [*SKILLS, *self.objective_choices(), *chosen]
        unique = list({objective_text(c): c for c in choices}.items())
        first = objective_text(chosen[0]) if chosen else None
        lists = ((self.objective_1, [("(choose)", None), *unique]),
                 (self.objective_2, [(NO_SECOND, None), *((t, d) for t, d in unique if t != first)]))
        blocked = [combo.blockSignals(True) for combo, _ in lists]
        try:
            for combo, items in lists:
                combo.clear()
                for text, data in items:
                    combo.addItem(text, data)
            self.objective_1.setCurrentText(first or "(choose)")
            self.objective_2.setCurrentText(objective_text(chosen[1]) if len(chosen) > 1 else NO_SECOND)
        finally:
            for (combo, _), was in zip(lists, blocked):
                combo.blockSignals(was)

    def _fill_tune(self) -> None:
        from fusion_gui.session.merge import find_method

        method = find_method(self.session.settings.get("method"))
        self.numeric_params = [p.name for p in (method.params if method else ()) if p.type in (int, float)]
        self.tune_table.setRowCount(0)
        for entry in self.session.settings.get("tune", []):
            self._add_tune_row(entry, write=False)

    def _describe_recipe(self) -> None:
        s = self.session.settings
        if not s.get("method"):
            return
        names = ", ".join(str(m).rstrip("/").rsplit("/", 1)[-1] for m in s.get("models") or [])
        base = str(s.get("base") or "none").rstrip("/").rsplit("/", 1)[-1]
        fixed = ", ".join(f"{k} {v}" for k, v in (s.get("fixed") or {}).items())
        self.method_label.setText(f"Method {s['method']}, base {base}, models {names}"
                                  + (f"; fixed: {fixed}." if fixed else "."))

    # --- widgets -> settings ---------------------------------------------------------------
    def _write_objectives(self) -> None:
        objectives = [c.currentData() for c in (self.objective_1, self.objective_2) if c.currentData() is not None]
        unique = list({objective_text(o): o for o in objectives}.values())
        self.session.set("objectives", unique, self)
        self.fill_objectives()  # the second list follows the first (and drops a second equal to it)

    def _add_tune_row(self, entry: dict | None = None, write: bool = True) -> None:
        entry = entry if isinstance(entry, dict) else {
            "name": self.numeric_params[0] if self.numeric_params else "weight", "scope": "model",
            "low": 0.0, "high": 1.0}
        row = self.tune_table.rowCount()
        self.tune_table.insertRow(row)
        name = QComboBox(editable=True)
        name.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        name.setMinimumContentsLength(6)
        name.addItems(self.numeric_params)
        name.setCurrentText(str(entry.get("name", "")))
        scope = QComboBox()
        scope.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        scope.setMinimumContentsLength(6)  # the list shows the whole words
        for key, text in SCOPES.items():
            scope.addItem(text, key)
        scope.setCurrentIndex(max(0, scope.findData(entry.get("scope", "global"))))
        low = _spin(float(entry.get("low", 0.0)), -1000.0, 1000.0, 2)
        high = _spin(float(entry.get("high", 1.0)), -1000.0, 1000.0, 2)
        start = _spin(NO_START if entry.get("start") is None else float(entry["start"]), NO_START, 1000.0, 2)
        start.setSpecialValueText("none")
        for column, widget in enumerate((name, scope, low, high, start)):
            self.tune_table.setCellWidget(row, column, widget)
        name.currentTextChanged.connect(lambda _: self._write_tune())
        scope.currentIndexChanged.connect(lambda _: self._write_tune())
        low.valueChanged.connect(lambda _: self._write_tune())
        high.valueChanged.connect(lambda _: self._write_tune())
        start.valueChanged.connect(lambda _: self._write_tune())
        if write:
            self._write_tune()

    def _remove_tune_row(self) -> None:
        row = self.tune_table.currentRow()
        self.tune_table.removeRow(row if row >= 0 else self.tune_table.rowCount() - 1)
        self._write_tune()

    def _write_tune(self) -> None:
        tune = []
        for row in range(self.tune_table.rowCount()):
            name, scope, low, high, start = (self.tune_table.cellWidget(row, c) for c in range(5))
            tune.append({"name": name.currentText().strip(), "scope": scope.currentData(),
                         "low": round(low.value(), 6), "high": round(high.value(), 6),
                         "start": None if start.value() == NO_START else round(start.value(), 6)})
        self.session.set("tune", tune, self)
