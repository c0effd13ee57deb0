"""Search: tune a merge's parameters (grid or CMA-ES) against one or two objectives, with live plots
and a sortable table of trials.

The form edits the SearchSession's settings (the YAML `fusion-gui search` reads). Start runs the
engine's search through a JobRunner; Pause stops it after the trial under way (the study stays in
its storage) and Resume continues it, also after the app was closed. While the tab is shown, a
LatestJob polls the storage off the GUI thread, so trials of other workers sharing it appear too.
Clicking a point, or double-clicking a row, opens that trial's recipe in the Merge view.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea, QSplitter, QVBoxLayout, QWidget,
)

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.search.events import (
    HeldOutScore, SearchStarted, SearchStopped, TrialFinished, TrialStarted,
)
from fusion_gui.events import Log
from fusion_gui.session.search import SearchSession
from fusion_gui.session.search_engine import (
    check_settings, list_trials, record, row_from, search_job, stored_settings,
)
from fusion_gui.ui.jobs import JobRunner, LatestJob
from fusion_gui.ui.panels.search_form import SearchForm
from fusion_gui.ui.panels.search_trial_bar import TrialBar, scores_text
from fusion_gui.ui.plots.search_plots import SearchPlots
from fusion_gui.ui.widgets.file_dialogs import ask_open_file, ask_save_file
from fusion_gui.ui.widgets.trials_table import TrialsTable

POLL_MS = 2000  # how often the storage is read for other workers' trials while the tab is shown
SETTINGS_FILTER = "Search settings (*.yml *.yaml)"
ERROR_STYLE = "color: #b00020"
STATUS = {"paused": "paused", "cancelled": "cancelled", "failures": "failed"}  # the history's word for a stop


def _sqlite_file(storage: str) -> Path | None:
    return Path(storage[len("sqlite:///"):]) if storage.startswith("sqlite:///") else None


def _listing_job(settings: dict, storage: str, objectives: list[str]):
    """A job (a generator) whose result is every trial in the storage."""
    yield from ()
    return list_trials(settings, storage, objectives)


def _reopen_job(folder: str):
    yield from ()
    return folder, stored_settings(folder)


class SearchPanel(QWidget):
    message = Signal(str)
    merge_requested = Signal()  # a trial's recipe was loaded into the Merge view: show it
    searched = Signal(object)  # the engine's result, when a search ends

    def __init__(self, session: SearchSession | None = None, merge=None, evaluate=None, history=None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session if session is not None else SearchSession()
        self.merge, self.evaluate, self.history = merge, evaluate, history
        self.selected: int | None = None
        self.pause_token = CancelToken()
        self._started_at = 0.0
        self._storage_ready = True  # False from a start until its first trial: the engine is creating the study
        self._shown_storage = ""  # the storage whose trials are shown

        self.form = SearchForm(self.session, self._objective_choices)
        self.form.from_merge_requested.connect(self.copy_from_merge)
        self.form.load_requested.connect(self._ask_load)
        self.form.save_requested.connect(self._ask_save)
        self.form.reopen_requested.connect(self._ask_reopen)
        self.start_button = QPushButton("Start search")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause", enabled=False)
        self.pause_button.setToolTip("Stop after the trial under way; the study stays in its storage.")
        self.pause_button.clicked.connect(self.pause)
        self.resume_button = QPushButton("Resume", enabled=False)
        self.resume_button.setToolTip("Continue the study in the storage (also one from an earlier session).")
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.cancel_button = QPushButton("Cancel")
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.status_label = QLabel("Copy a merge from the Merge view, choose objectives and an output folder, "
                                   "then Start.")
        self.status_label.setWordWrap(True)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.error_label.setVisible(False)
        self.plots = SearchPlots(self.session)
        self.table = TrialsTable()
        self.plots.trial_clicked.connect(self.table.select_trial)
        self.trial_bar = TrialBar(self.session, merge)
        self.trial_bar.message.connect(self.message)
        self.trial_bar.error.connect(self.show_error)
        self.trial_bar.merge_requested.connect(self.merge_requested)
        self.plots.trial_clicked.connect(self.trial_bar.open_in_merge)
        self.table.trial_chosen.connect(self.trial_bar.open_in_merge)
        self.table.trial_selected.connect(self.trial_bar.select)
        handlers = {SearchStarted: self._on_started, TrialStarted: self._on_trial, TrialFinished: self._on_trial,
                    HeldOutScore: self._on_held_out, SearchStopped: lambda event: event.message,
                    Log: lambda event: event.message}
        self.runner = JobRunner(self, start_button=self.start_button, cancel_button=self.cancel_button,
                                progress_bar=self.progress_bar, status_label=self.status_label,
                                handlers=handlers, on_finished=self._on_finished,
                                on_failed=self._on_failed, on_cancelled=self._on_cancelled,
                                on_done=self._on_done, error_dialog=False)
        self.opener = LatestJob(self)  # reads a search folder's stored settings off the GUI thread
        self.opener.result.connect(self._on_reopened)
        self.opener.failed.connect(lambda summary, _details: self.show_error(summary))
        self.poller = LatestJob(self)
        self.poller.result.connect(self.session.add_trials)
        self.poll_timer = QTimer(self, interval=POLL_MS)
        self.poll_timer.timeout.connect(self.poll)
        self.session.trials_added.connect(self._on_trials)
        self.session.trials_cleared.connect(self.table.trials.clear)
        self.session.settings_changed.connect(lambda _: self.table.trials.set_objectives(self.session.objectives))
        for signal in (self.session.settings_changed, self.session.trials_added, self.session.trials_cleared):
            signal.connect(self._enable_resume)  # the budget raised, trials used up: Resume follows

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the form fits its width
        scroll.setMinimumWidth(self.form.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
                               + 2 * scroll.frameWidth())  # with the font in use
        controls = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.resume_button, self.cancel_button):
            controls.addWidget(button)
        controls.addWidget(self.progress_bar, 1)
        live = QSplitter(Qt.Orientation.Vertical)
        live.addWidget(self.plots)
        live.addWidget(self.table)
        live.setStretchFactor(0, 3)
        live.setStretchFactor(1, 2)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(controls)
        right_layout.addWidget(self.status_label)
        right_layout.addWidget(self.error_label)
        right_layout.addWidget(live, 1)
        right_layout.addWidget(self.trial_bar)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(scroll)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([500, 780])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.table.trials.set_objectives(self.session.objectives)

    # --- messages --------------------------------------------------------------------------
    def show_error(self, text: str) -> None:
        """One sentence in the view; the app stays as it was."""
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))
        if text:
            self.message.emit(text)

    # --- settings --------------------------------------------------------------------------
    def _objective_choices(self) -> list:
        """The Evaluate tab's task files and its perplexity text, as objectives (lm-eval tasks cannot be one)."""
        if self.evaluate is None:
            return []
        files = [spec for spec in self.evaluate.task_specs if Path(spec).suffix.lower() in (".jsonl", ".json")]
        text = [{"task": "perplexity", "file": self.evaluate.text_file}] if self.evaluate.text_file else []
        return [*files, *text]

    def copy_from_merge(self) -> bool:
        if self.merge is None:
            return False
        try:
            names = self.session.copy_from_merge(self.merge)
        except InputError as err:
            self.show_error(str(err))
            return False
        self.show_error("")
        self.message.emit(f"Copied the Merge view's recipe; tunable parameters: {', '.join(names)}.")
        return True

    def load_settings(self, path: str | Path) -> bool:
        try:
            self.session.load_file(path)
        except InputError as err:
            self.show_error(str(err))
            return False
        self.show_error("")
        self.message.emit(f"Loaded the search settings {path}.")
        return True

    def save_settings(self, path: str | Path) -> Path | None:
        try:
            saved = self.session.save_file(path)
        except InputError as err:
            self.show_error(str(err))
            return None
        self.message.emit(f"Saved the search settings to {saved}; `fusion-gui search {saved} OUT` runs them.")
        return saved

    def _ask_load(self) -> None:
        path = ask_open_file(self, "Search settings", "", SETTINGS_FILTER)
        if path:
            self.load_settings(path)

    def _ask_save(self) -> None:
        path = ask_save_file(self, "Save search settings", "search.yml", SETTINGS_FILTER)
        if path:
            self.save_settings(path)

    def reopen(self, folder: str | Path):
        """Bring back a search started earlier: its settings from its study, then its trials; Resume goes on."""
        if self.runner.running:
            return None
        folder = str(folder)
        return self.opener.request(lambda _token: _reopen_job(folder))

    def _on_reopened(self, found) -> None:
        folder, settings = found
        try:
            self.session.replace_settings(settings)
        except InputError as err:
            self.show_error(str(err))
            return
        self.show_error("")
        self.form.output_row.setText(folder)
        self._enable_resume()
        self.poll()
        self.message.emit(f"Opened the search in {folder}: Resume continues it.")

    def _ask_reopen(self) -> None:
        from fusion_gui.ui.widgets.file_dialogs import ask_folder

        folder = ask_folder(self, "A search's output folder")
        if folder:
            self.reopen(folder)

    # --- running ---------------------------------------------------------------------------
    def problem(self, resume: bool = False) -> str | None:
        """What stops a start, as one sentence (the engine checks the rest before any model loads)."""
        if not self.session.settings.get("method") or not self.session.settings.get("models"):
            return "Nothing to merge yet: press “Search from the Merge view” after setting up a merge there."
        if not self.session.objectives:
            return "Choose at least one objective (a demo skill or a task file)."
        if not self.session.out_dir:
            return "Choose an output folder for the search (its study, best recipe and trials)."
        if not resume and self.session.trials and self._shown_storage == self.session.storage_path():
            return (f"{self.session.storage_path()} already holds a search with {len(self.session.trials)} trials: "
                    f"press Resume to continue it, or choose another output folder.")
        try:
            check_settings(self.session.settings)
        except InputError as err:
            return str(err)
        return None

    def start(self, resume: bool = False):
        """Start (or resume) the search; None when it cannot start (the reason is shown)."""
        problem = self.problem(resume)
        if problem is not None:
            self.show_error(problem)
            return None
        self.show_error("")
        if not resume:
            self.session.clear_trials()
        settings, out_dir = dict(self.session.settings), self.session.out_dir
        self._shown_storage = self.session.storage_path()
        self.session.trials_settings = copy.deepcopy(settings)
        self.pause_token = pause = CancelToken()
        self._started_at = time.monotonic()
        self._storage_ready = False
        worker = self.runner.start(
            lambda token: search_job(settings, out_dir, token, pause=pause, resume=resume),
            "Resuming the search…" if resume else "Starting the search: the models load once…")
        if worker is not None:
            self.pause_button.setEnabled(True)
            self.resume_button.setEnabled(False)
            self.form.setEnabled(False)  # what runs stays what is shown
            self.poll_timer.start()
        return worker

    def _enable_resume(self) -> None:
        """Resume only when a stored study could run another trial: a storage, and budget left (or raised)."""
        left = self.session.trials_left()
        stored = bool(self.session.out_dir or self.session.settings.get("storage"))
        self.resume_button.setEnabled(not self.runner.running and stored and left != 0)
        self.resume_button.setToolTip(
            "The budget of trials is spent: raise it to resume the study." if stored and left == 0
            else "Continue the study in the storage (also one from an earlier session).")

    def pause(self) -> None:
        """Stop after the trial under way; Resume continues the stored study."""
        if self.runner.running:
            self.pause_token.cancel()
            self.pause_button.setEnabled(False)
            self.runner.set_status("Pausing after the trial under way…")

    def cancel(self) -> None:
        self.runner.cancel()

    def _on_started(self, event: SearchStarted) -> str:
        self._storage_ready = True  # the study exists: reading it races nothing now
        done = f"; {event.trials_so_far} trials already in it" if event.trials_so_far else ""
        return f"Searching {len(event.dimensions)} parameters ({', '.join(event.dimensions)}){done}."

    def _on_trial(self, event) -> str | None:
        row = row_from(event, self.session.objectives)
        if row is not None:
            self.session.add_trials([row])
        if getattr(event, "state", "") == "failed" and event.error:
            return f"Trial {event.number} failed: {event.error}"
        return None

    def _on_held_out(self, event: HeldOutScore) -> str:
        self.session.set_held_out(event.number, tuple(event.held_out.get(o) for o in self.session.objectives))
        return f"Re-scored trial {event.number} on held-out examples."

    def _on_trials(self, rows) -> None:
        self.table.trials.upsert(rows)
        done = sum(1 for t in self.session.trials.values() if t.state != "running")
        budget = int((self.session.settings.get("budget") or {}).get("trials") or 0)
        if self.runner.running and budget:
            self.runner.set_fraction(done / budget)
        if self.runner.running:
            best = self.session.best()
            so_far = f"; best so far: trial {best.number}, {scores_text(self.session, best)}" if best else ""
            self.runner.set_status(f"{done} trial(s) done{so_far}.")

    def _on_finished(self, result) -> str:
        """The engine returns after a pause, a cancel and three failures too: `stopped` says which."""
        reason, count = result.stopped.reason, len(self.session.trials)
        self.searched.emit(result)
        self._record(STATUS.get(reason, "done"), result)
        if reason == "paused":
            return f"Paused after {count} trials: the study is kept in its storage; Resume continues it."
        if reason == "cancelled":
            return f"Cancelled after {count} trials; Resume continues the study from its storage."
        if reason == "failures":
            self.show_error(result.stopped.message)
            return "The search stopped: its trials failed."
        best = self.session.best()
        where = f" Best recipe: {result.recipe_file}." if result.recipe_file else ""
        return (f"{result.stopped.message} {result.trials} complete trials"
                + (f"; best trial {best.number}: {scores_text(self.session, best)}." if best else ".") + where)

    def _on_failed(self, summary: str, _details: str) -> None:
        self.show_error(summary)
        self._record("failed")

    def _on_cancelled(self) -> str:
        self._record("cancelled")
        return f"Cancelled after {len(self.session.trials)} trials; Resume continues the study from its storage."

    def _on_done(self) -> None:
        self.pause_button.setEnabled(False)
        self._enable_resume()
        self.form.setEnabled(True)
        self.plots.flush()
        if not self.isVisible():
            self.poll_timer.stop()

    def _record(self, status: str, result=None) -> None:
        """Every search goes into the history, however it ended."""
        if self.history is not None and self.session.trials_settings:
            record(self.history, self.session.trials_settings, result, status, time.monotonic() - self._started_at)

    # --- the storage, polled --------------------------------------------------------------
    def poll(self):
        """Read every trial of the study in the storage off the GUI thread (other workers' too)."""
        storage = self.session.storage_path()
        if storage != self._shown_storage and not self.runner.running:
            self._shown_storage = storage  # another study: its trials replace the ones shown
            self.poller.cancel_pending()
            self.session.clear_trials()
        file = _sqlite_file(storage)
        if not storage or (file is not None and not file.is_file()) or self.poller.busy or not self._storage_ready:
            return None  # nothing to read yet (reading must not create the file, nor race the study's creation)
        settings, objectives = dict(self.session.settings), self.session.objectives
        return self.poller.request(lambda _token: _listing_job(settings, storage, objectives))

    def showEvent(self, event) -> None:
        self.poll_timer.start()
        self._enable_resume()
        super().showEvent(event)

    def hideEvent(self, event) -> None:
        if not self.runner.running:
            self.poll_timer.stop()
        super().hideEvent(event)

    # --- trials ----------------------------------------------------------------------------
