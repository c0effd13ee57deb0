"""The Distill view's pre-flight line: on every form edit (debounced) a background job checks the
tokenizers, packs the data and estimates peak memory (engine.distill.preflight); this label shows
how many tokens carry loss and the estimate, with warnings like a merge's."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

from fusion_gui.engine.errors import InputError
from fusion_gui.ui.jobs import LatestJob

DELAY_MS = 400
WARNING_STYLE = "color: #b35900;"


class DistillPreflight(QLabel):
    def __init__(self, parent: QWidget | None = None):
        super().__init__("The pre-flight (data and memory) appears here once teacher, student and data are set.",
                         parent)
        self.setWordWrap(True)
        self.plan = None
        self.warnings: list[str] = []
        self.runner = LatestJob(self, delay_ms=DELAY_MS)
        self.runner.result.connect(self._show)
        self.runner.failed.connect(self._show_error)

    def schedule(self, config_dict: dict) -> None:
        """Plan the config the form shows; a form the engine refuses says why instead."""
        from fusion_gui.engine.distill.config import config_from_dict

        if not all(config_dict.get(k) for k in ("teacher", "student")) or not config_dict["data"].get("path"):
            self.runner.cancel_pending()
            return
        try:
            config = config_from_dict(config_dict)
        except InputError as err:
            self.runner.cancel_pending()
            self._show_error(str(err), "")
            return

        def factory():
            from fusion_gui.engine.distill.preflight import plan_distill

            return lambda token: plan_distill(config, token)
        self.runner.schedule(factory)

    def _show(self, plan) -> None:
        from fusion_gui.engine.distill.preflight import describe

        self.plan = plan
        text, self.warnings = describe(plan)
        self.setStyleSheet(WARNING_STYLE if self.warnings else "")
        self.setText(" ".join([text, *self.warnings]))

    def _show_error(self, summary: str, _details: str) -> None:
        self.plan, self.warnings = None, [summary]
        self.setStyleSheet(WARNING_STYLE)
        self.setText(summary)
