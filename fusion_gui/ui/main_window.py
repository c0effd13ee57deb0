"""The main window: composes the panels of the tabs; holds no logic of its own beyond wiring.

"Try the demo" is one click path: the demo models in, a merge into a new folder in the user data
folder, then the Evaluate tab scoring the merge and its inputs. While a merge runs, the form it uses
is locked (the session refuses changes too), so its plots always describe what is shown.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QGroupBox, QMainWindow, QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget,
)

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.merge.recipe import dump_recipe, load_recipe
from fusion_gui.session import Session
from fusion_gui.session.merge import LOCKED
from fusion_gui.session.run_records import open_history
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.ui.hub.settings_menu import add_hub_settings
from fusion_gui.ui.jobs import JobList
from fusion_gui.ui.panels.compare_panel import ComparePanel
from fusion_gui.ui.panels.inspect_panel import InspectPanel
from fusion_gui.ui.dialogs.drill_down_dialog import connect_drill_downs
from fusion_gui.ui.panels.distill_panel import DistillPanel
from fusion_gui.ui.panels.eval_panel import EvalPanel
from fusion_gui.ui.panels.history_panel import HistoryPanel
from fusion_gui.ui.panels.models_panel import WEIGHT_SUFFIXES, ModelsPanel
from fusion_gui.ui.panels.plot_tabs import PlotTabs
from fusion_gui.ui.panels.recipe_panel import RecipePanel, save_recipe_file
from fusion_gui.ui.panels.run_panel import RunPanel
from fusion_gui.ui.panels.search_panel import SearchPanel
from fusion_gui.ui.panels.start_panel import StartPanel
from fusion_gui.ui.panels.strategy_panel import StrategyPanel
from fusion_gui.ui.panels.tokenizer_panel import TokenizerPanel
from fusion_gui.ui.settings import AppSettings
from fusion_gui.ui.tab_status import TabStatus
from fusion_gui.ui.widgets.file_dialogs import ask_open_file, ask_save_file
from fusion_gui.ui.widgets.wheel_guard import install_wheel_guard

RECIPE_SUFFIXES = (".yml", ".yaml")
DEMO_PLOTS_SHOWN_MS = 2000  # the demo's merge plots stay in view this long before its scores
RECIPE_FILTER = "Merge recipes (*.yml *.yaml)"


def _group(title: str, widget: QWidget) -> QGroupBox:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.addWidget(widget)
    return box


def dropped_paths(urls) -> tuple[list[str], list[str]]:
    """(model folders and weight files, recipe files) among dropped URLs."""
    models, recipes = [], []
    for url in urls:
        if not url.isLocalFile():
            continue
        path = Path(url.toLocalFile())
        if path.is_dir() or path.suffix in WEIGHT_SUFFIXES:
            models.append(str(path))
        elif path.suffix in RECIPE_SUFFIXES:
            recipes.append(str(path))
    return models, recipes


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Fusion: merge models")
        self.setAcceptDrops(True)
        self.settings = settings or AppSettings.load()
        self.session = Session()
        self.session.history = open_history()  # a damaged file is moved aside: never a reason not to start
        self.document = self.session.merge  # what the Merge tab's panels share
        self.job_list = JobList(self)  # every job a panel or dialog of this window runs

        self.models_panel = ModelsPanel(self.document, settings=self.settings)
        self.models_panel.set_recent(self.settings.recent_models)
        self.strategy_panel = StrategyPanel(self.document, self.models_panel.layer_count)
        self.tokenizer_panel = TokenizerPanel(self.document)
        self.run_panel = RunPanel(self.document, self.settings)
        self.recipe_panel = RecipePanel(self.document)
        self.merge_plots = PlotTabs(show_result=True, stem="merge")
        self.merge_plots.addTab(self.run_panel.log_view, "Log")
        self.merge_plots.addTab(self.recipe_panel, "Recipe YAML")
        self.compare_panel = ComparePanel(lambda: self.document.state.model_refs(), self.session.compare)
        self.eval_panel = EvalPanel(self.session.evaluate)
        self.distill_panel = DistillPanel(self.session.distill)
        self.start_panel = StartPanel()  # shown while no models are loaded

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.start_panel)
        self.form_groups = (_group("Models", self.models_panel), _group("Strategy", self.strategy_panel),
                            _group("Tokenizer", self.tokenizer_panel))  # locked while a merge runs
        for group, stretch in zip(self.form_groups, (0, 1, 0)):
            left_layout.addWidget(group, stretch)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(left)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(_group("Run", self.run_panel))
        right_layout.addWidget(self.merge_plots, 1)
        self.merge_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.merge_splitter.addWidget(scroll)
        self.merge_splitter.addWidget(right)
        self.merge_splitter.setStretchFactor(0, 5)
        self.merge_splitter.setStretchFactor(1, 6)

        self.tabs = QTabWidget()
        self.tabs.addTab(self.merge_splitter, "Merge")
        self.tabs.addTab(self.compare_panel, "Compare")
        self.inspect_panel = InspectPanel(self.session.inspect, self.document, lambda: self.document.state.model_refs())
        self.tabs.addTab(self.inspect_panel, "Inspect")
        self.inspect_panel.similarity.merge_filled.connect(lambda: self._show_merge(False))
        connect_drill_downs(self, self.merge_plots, self.document, self.compare_panel.plots, self.session.compare)
        self.tabs.addTab(self.eval_panel, "Evaluate")
        self.tabs.addTab(self.distill_panel, "Distill")
        self.search_panel = SearchPanel(self.session.search, self.document, self.session.evaluate, self.session.history)
        self.tabs.addTab(self.search_panel, "Search")
        self.search_panel.merge_requested.connect(lambda: self._show_merge(False))
        self.history_panel = HistoryPanel(self.document, self.session.history)
        self.eval_panel.tasks_panel.history = self.session.history
        self.tabs.addTab(self.history_panel, "History")
        self.history_panel.merge_requested.connect(self._show_merge)
        self.distill_panel.distilled.connect(
            lambda result: self.history_panel.record_distill(result, self.session.distill.config))
        self.tabs.currentChanged.connect(lambda _: self.compare_panel.refresh_choices())
        self.tabs.currentChanged.connect(lambda _: self.inspect_panel.refresh_choices())
        self.setCentralWidget(self.tabs)
        self.tab_status = TabStatus(self.tabs, self.statusBar())

        for panels, page in (((self.models_panel, self.strategy_panel, self.run_panel, self.start_panel,
                               self.tokenizer_panel, self.document), self.merge_splitter),
                             ((self.compare_panel,), self.compare_panel), ((self.eval_panel,), self.eval_panel),
                             ((self.inspect_panel,), self.inspect_panel),
                             ((self.distill_panel,), self.distill_panel), ((self.history_panel,), self.history_panel),
                             ((self.search_panel,), self.search_panel)):
            for panel in panels:
                panel.message.connect(lambda text, page=page: self.tab_status.show(page, text))
        self.models_panel.models_added.connect(self._remember_models)
        self.run_panel.run_started.connect(self._on_run_started)
        self.run_panel.merged.connect(self._on_merged)
        self.run_panel.busy_changed.connect(self._lock_form)
        self.eval_panel.evaluated.connect(self._on_evaluated)
        self._demo_story = False  # the demo's merge runs on into its evaluation
        self.run_panel.event_received.connect(self.merge_plots.handle_event)
        self.start_panel.demo_ready.connect(self._load_demo)
        self.document.changed.connect(lambda _: self.start_panel.setVisible(not self.document.state.model_refs()))
        self._extract_lora_dialog = None
        self._build_menu()
        self._restore()
        self.say("Add models (or press “Try the demo”), pick a method, choose an output folder, then Run.")
        install_wheel_guard()  # also for windows made without create_app (tests, embedding)

    # --- menu and recipe files -------------------------------------------------------------

    def say(self, text: str, page: QWidget | None = None) -> None:
        """A status message for one tab (the Merge tab unless `page` says otherwise)."""
        self.tab_status.show(page if page is not None else self.merge_splitter, text)

    def _build_menu(self) -> None:
        menu = self.menuBar().addMenu("&File")
        for text, shortcut, slot in (("&Open recipe…", QKeySequence.StandardKey.Open, self.ask_open_recipe),
                                     ("&Save recipe…", QKeySequence.StandardKey.Save, self.ask_save_recipe),
                                     (None, None, None),
                                     ("&Quit", QKeySequence.StandardKey.Quit, self.close)):
            if text is None:
                menu.addSeparator()
                continue
            action = QAction(text, self)
            action.setShortcut(shortcut)
            action.triggered.connect(slot)
            menu.addAction(action)
            if slot == self.ask_open_recipe:
                self.open_recipe_action = action  # off while a merge runs
        tools = self.menuBar().addMenu("&Tools")
        tools.addAction("Extract LoRA from a fine-tune…", self.open_extract_lora)
        self.allow_downloads_action = add_hub_settings(self, self.settings, lambda _: self.run_panel.schedule_preflight())

    def open_extract_lora(self):
        """The one Extract LoRA dialog (kept, so a run in it outlives closing it), shown non-modal."""
        if self._extract_lora_dialog is None:
            from fusion_gui.ui.dialogs.extract_lora_dialog import ExtractLoraDialog

            self._extract_lora_dialog = ExtractLoraDialog(
                lambda: [*self.document.state.model_refs(), *self.settings.recent_models], self,
                merge_target=self._merge_target)
            self._extract_lora_dialog.adapter_ready.connect(self._add_adapter)
        self._extract_lora_dialog.show()
        self._extract_lora_dialog.raise_()
        return self._extract_lora_dialog

    def _merge_target(self) -> tuple[str | None, bool]:
        """What an adapter must fit to join the merge: its base (else its first model), vocabularies merged."""
        state = self.document.state
        return state.base_model or next(iter(state.model_refs()), None), state.tokenizer_choice()[0] is not None

    def _add_adapter(self, folder: str) -> None:
        self.tabs.setCurrentIndex(0)
        if self.models_panel.add_models([folder]):
            self.say(f"Added the adapter {folder} to the merge's models.")

    def ask_open_recipe(self) -> None:
        path = ask_open_file(self, "Open recipe", "", RECIPE_FILTER)
        if path:
            self.open_recipe(path)

    def ask_save_recipe(self) -> None:
        path = ask_save_file(self, "Save recipe", "recipe.yml", RECIPE_FILTER)
        if path:
            self.save_recipe(path)

    def open_recipe(self, path: str | Path) -> bool:
        """All or nothing: a recipe that does not load leaves the form as it was and says why."""
        try:
            notes = self.document.open_recipe(path)
        except InputError as err:
            show_error(self, str(err), title="Cannot open the recipe")
            return False
        self.say(" ".join([f"Opened {path}.", *notes]))
        return True

    def save_recipe(self, path: str | Path) -> Path | None:
        try:
            saved = save_recipe_file(self.document.recipe(), path)
        except OSError as err:
            show_error(self, f"Cannot write '{path}': {err.strerror or err}.", title="Cannot save the recipe")
            return None
        self.say(f"Saved {saved}")
        return saved

    # --- drag and drop ---------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        models, recipes = dropped_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else ([], [])
        if models or recipes:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        models, recipes = dropped_paths(event.mimeData().urls())
        if self.document.locked:  # a merge is running: its recipe stays as it is
            self.say(LOCKED)
            event.ignore()
            return
        if recipes:
            self.open_recipe(recipes[0])
        if models:
            self.models_panel.add_models(models)
        event.acceptProposedAction()

    # --- runs and settings -----------------------------------------------------------------------

    def _on_run_started(self) -> None:
        self.merge_plots.reset(())
        self.merge_plots.setCurrentIndex(0)

    def _lock_form(self, busy: bool) -> None:
        """What the running merge uses cannot change under it; Cancel is one click away."""
        self.document.locked = busy
        for group in self.form_groups:
            group.setEnabled(not busy)
        self.open_recipe_action.setEnabled(not busy)
        if not busy:
            self._demo_story = False  # it ended (merged, failed or cancelled): the story stops here

    def _show_merge(self, rerun: bool) -> None:
        self.tabs.setCurrentIndex(0)
        if rerun:  # a re-run writes somewhere new: never over the run it repeats
            self.run_panel.output_combo.setCurrentText("")

    def _on_merged(self, result) -> None:
        """Evaluate gets the result and its inputs, ready to score them side by side."""
        state = self.document.state
        self.models_panel.recheck_unreadable()  # Hub models Run downloaded first are readable now
        self.history_panel.record_merge(result, dump_recipe(self.document.recipe()), state.model_refs(),
                                        state.base_model)
        self.session.evaluate.set_models([result.out_dir, *self.document.state.refs_base_first()])
        self.session.inspect.set_spectral_models([*self.document.state.refs_base_first(), result.out_dir])
        self.say(f"Merged into {result.out_dir}. The Evaluate tab scores it and its inputs.")
        if self._demo_story:  # the demo's last step, once the filled plots have been seen a moment
            self._demo_story = False
            QTimer.singleShot(DEMO_PLOTS_SHOWN_MS, self._score_the_demo)

    def _score_the_demo(self) -> None:
        self.tabs.setCurrentWidget(self.eval_panel)
        if self.eval_panel.start() is not None:
            self.say("Scoring the demo merge and its inputs on the demo skills…", self.eval_panel)

    def _on_evaluated(self, result) -> None:
        self.say(f"Scored {len(self.eval_panel.models)} model(s) in {result.seconds:.0f} s: the table shows "
                 f"each one's scores.", self.eval_panel)

    def _load_demo(self, refs: list[str]) -> None:
        """The demo models in, a merge into a new folder chosen for the user, then its scores."""
        from fusion_gui.engine.evaluate.demo_merge import demo_recipe
        from fusion_gui.engine.evaluate.demo import data_root

        if self.run_panel.runner.running:
            return
        self.document.load_recipe(demo_recipe(refs[0], refs[1:]))
        self.session.evaluate.set_models(refs)
        out_dir = self.run_panel.choose_fresh_output(data_root() / "demo-merge")
        self._demo_story = self.run_panel.start_merge() is not None
        if self._demo_story:
            self.say(f"Demo models ready: merging them into {out_dir}; the Evaluate tab scores the result next.")

    def _remember_models(self, refs: list[str]) -> None:
        for ref in refs:
            self.settings.add_recent_model(ref)
        self.models_panel.set_recent(self.settings.recent_models)

    def _restore(self) -> None:
        geometry = AppSettings.decode_bytes(self.settings.window_geometry)
        if not (geometry and self.restoreGeometry(geometry)):
            self.resize(1400, 900)
        splitter = AppSettings.decode_bytes(self.settings.window_state)
        if not (splitter and self.merge_splitter.restoreState(splitter)):
            self.merge_splitter.setSizes([640, 760])
        if self.settings.last_recipe_yaml:
            try:
                self.document.load_recipe(load_recipe(self.settings.last_recipe_yaml))
            except InputError:
                pass  # a stale recipe is not worth an error at start-up

    def save_settings(self) -> None:
        self.settings.window_geometry = AppSettings.encode_bytes(self.saveGeometry().data())
        self.settings.window_state = AppSettings.encode_bytes(self.merge_splitter.saveState().data())
        try:
            self.settings.last_recipe_yaml = dump_recipe(self.document.recipe())
        except InputError:
            pass
        self.settings.save()

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.job_list.close_request(self):  # asks once; cancels every job and waits for it
            event.ignore()
            return
        self.save_settings()
        super().closeEvent(event)
