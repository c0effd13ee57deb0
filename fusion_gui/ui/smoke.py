"""A scripted walk through the window, for testing the installed app where no Python can drive it.

`FUSION_GUI_SMOKE=FOLDER fusion-gui` opens the window as usual, then clicks through what a new user does:
"Try the demo" (which builds the demo models, merges them into a new folder and scores the merge and its
inputs: the scores are saved to FOLDER/eval.csv), Run merge into FOLDER/merged, Compare, save and reopen the
recipe, Extract LoRA. Only the buttons and public methods a user's clicks reach are used.
Each step prints one line ("smoke: <step> ok: ...") to stdout; the app then quits with 0, or with 1 at the
first step that fails (an error dialog, or no result within its time limit), printing what went wrong.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

POLL_MS = 200


class SmokeWalk:
    def __init__(self, window, folder: Path):
        self.window, self.folder = window, Path(folder)
        self.steps = [  # (name, action, done?, what to print, seconds allowed)
            ("demo", self._click_demo, self._demo_scored, self._demo_report, 1200),
            ("evaluate", lambda: None, lambda: True, self._save_eval, 10),
            ("merge", self._click_merge, self._merged, lambda: self.window.run_panel.summary_label.text(), 300),
            ("compare", self._click_compare, self._compared, lambda: self.window.compare_panel.status_label.text(),
             300),
            ("recipe", self._save_and_open_recipe, lambda: self.opened, self._recipe_report, 10),
            ("extract-lora", self._click_extract, self._extracted, lambda: str(self.folder / "lora"), 300),
        ]
        self.timer = QTimer(interval=POLL_MS)
        self.timer.timeout.connect(self._poll)
        self.deadline = 0.0
        self.refs: list[str] = []
        self.saved, self.opened, self.lora_dialog = None, False, None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._begin()
        self.timer.start()

    def _begin(self) -> None:
        name, action, *_rest, seconds = self.steps[0]
        self.deadline = time.monotonic() + seconds
        action()

    def _poll(self) -> None:
        name, _action, done, report, _seconds = self.steps[0]
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, QMessageBox):
            return self._finish(1, f"smoke: {name} FAILED: {dialog.text()}\n{dialog.detailedText()}")
        if time.monotonic() > self.deadline:
            return self._finish(1, f"smoke: {name} FAILED: no result in time")
        if not done():
            return
        print(f"smoke: {name} ok: {report()}", flush=True)
        self.steps.pop(0)
        if not self.steps:
            return self._finish(0, "smoke: all steps ok")
        self._begin()

    def _finish(self, code: int, line: str) -> None:
        self.timer.stop()
        print(line, flush=True)
        QApplication.exit(code)

    # --- the steps -------------------------------------------------------------------------------

    def _click_demo(self) -> None:
        self.window.start_panel.demo_button.click()

    def _demo_scored(self) -> bool:
        """The one click's whole story: models in, merged, and the merge and its inputs scored."""
        self.refs = self.window.document.state.refs_base_first()
        panel = self.window.eval_panel
        return len(self.refs) == 3 and panel.save_button.isEnabled() and not panel.runner.running \
            and len(panel.models) == 4

    def _demo_report(self) -> str:
        return f"{self.window.start_panel.status_label.text()} models: {', '.join(self.refs)}; " \
               f"scored: {', '.join(self.window.eval_panel.models)}"

    def _click_merge(self) -> None:
        self.window.tabs.setCurrentIndex(0)
        self.window.run_panel.set_output_dir(str(self.folder / "merged"))
        self.window.run_panel.run_button.click()

    def _merged(self) -> bool:
        return (self.folder / "merged" / "config.json").is_file() and self.window.run_panel.run_button.isEnabled()

    def _save_eval(self) -> str:
        self.window.eval_panel.save_csv(str(self.folder / "eval.csv"))
        return str(self.folder / "eval.csv")

    def _click_compare(self) -> None:
        base, count, reverse = self.refs
        self.window.tabs.setCurrentWidget(self.window.compare_panel)
        self.window.compare_panel.set_models(count, reverse, base)
        self.window.compare_panel.compare_button.click()

    def _compared(self) -> bool:
        return self.window.compare_panel.compare_button.isEnabled() and \
            self.window.compare_panel.status_label.text().startswith("Compared")

    def _save_and_open_recipe(self) -> None:
        from fusion_gui.engine.merge.recipe import Recipe

        self.window.tabs.setCurrentIndex(0)
        self.saved = self.window.save_recipe(self.folder / "recipe.yml")
        self.window.document.load_recipe(Recipe(merge_method="linear"))  # an empty form, as after a restart
        self.opened = self.saved is not None and self.window.open_recipe(self.saved)

    def _recipe_report(self) -> str:
        from fusion_gui.engine.merge.recipe import dump_recipe

        same = self.opened and dump_recipe(self.window.document.recipe()) == self.saved.read_text(encoding="utf-8")
        return f"saved and reopened {self.saved}; the form holds the saved recipe: {same}"

    def _click_extract(self) -> None:
        base, count, _reverse = self.refs
        self.lora_dialog = dialog = self.window.open_extract_lora()
        dialog.set_inputs(count, base, str(self.folder / "lora"))
        dialog.run_button.click()

    def _extracted(self) -> bool:
        return (self.folder / "lora" / "adapter_config.json").is_file() and self.lora_dialog.run_button.isEnabled()
