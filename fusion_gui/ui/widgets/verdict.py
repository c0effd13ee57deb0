"""The smoke check's verdict after a merge or distillation: one coloured line (quiet when ok) and the
checks that were not ok, filled from SmokeCheck / SmokeVerdict events or a result's .smoke."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from fusion_gui.events import SmokeCheck, SmokeVerdict

# muted green when ok (nothing to act on), amber when suspicious, red when broken
COLOURS = {"ok": "#3a7d44", "suspicious": "#b36b00", "broken": "#c0392b", "skipped": "#777777"}
HEADLINES = {"ok": "Smoke check: ok.", "suspicious": "Smoke check: suspicious. Look before using this model:",
             "broken": "Smoke check: broken. This model does not work as written:"}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class VerdictView(QWidget):
    """Hidden until a check or verdict arrives; `clear()` before each run."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.verdict: SmokeVerdict | None = None
        self.checks: list[SmokeCheck] = []
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(self.label.textFormat().RichText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        self.setVisible(False)

    def clear(self) -> None:
        self.verdict, self.checks = None, []
        self.label.clear()
        self.setVisible(False)

    def on_check(self, check: SmokeCheck) -> str:
        """A handler: one check arrived while the smoke check runs."""
        self.checks.append(check)
        self.label.setText(f"<span style='color:#777777'>Smoke check: {len(self.checks)} check(s) done…</span>")
        self.setVisible(True)
        return f"Smoke check: {check.name} {check.status}."

    def show_verdict(self, verdict: SmokeVerdict | None) -> str | None:
        """A handler for SmokeVerdict events, and what a finished job's result.smoke is given to."""
        if verdict is None:
            return None
        self.verdict = verdict
        colour = COLOURS.get(verdict.verdict, COLOURS["skipped"])
        head = HEADLINES.get(verdict.verdict, f"Smoke check: {verdict.verdict}.")
        extra = f" Perplexity {verdict.perplexity:.3g}." if verdict.perplexity is not None else ""
        html = f"<span style='color:{colour}; font-weight:{'normal' if verdict.verdict == 'ok' else 'bold'}'>" \
               f"{_escape(head)}</span>{_escape(extra) if verdict.verdict == 'ok' else ''}"
        if verdict.verdict != "ok" and verdict.reasons:
            html += "<ul style='margin:0'>" + "".join(
                f"<li style='color:{colour}'>{_escape(r)}</li>" for r in verdict.reasons) + "</ul>"
        self.label.setText(html)
        self.label.setToolTip("\n".join(f"{c.name}: {c.status}. {c.detail}" for c in verdict.checks))
        self.setVisible(True)
        return head.rstrip(":") if verdict.verdict != "ok" else None

    def handlers(self) -> dict:
        """Entries for a JobRunner's handlers table."""
        return {SmokeCheck: self.on_check, SmokeVerdict: self.show_verdict}
