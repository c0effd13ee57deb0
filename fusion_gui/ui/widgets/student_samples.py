"""Live samples of on-policy distillation: the student's own completions, each token coloured by how
likely the teacher found it (green: the teacher agrees, red: the teacher would rarely write it)."""

from __future__ import annotations

import colorsys
import html
import math

from PySide6.QtWidgets import QTextBrowser

from fusion_gui.engine.distill.teacher_events import StudentSample

KEPT = 4  # the newest samples shown


def token_colour(log_prob: float) -> str:
    """A background from green (log-prob 0) through yellow to red (log-prob -8 and below)."""
    x = max(0.0, min(1.0, -log_prob / 8.0)) if math.isfinite(log_prob) else 1.0
    r, g, b = colorsys.hls_to_rgb((1 - x) / 3, 0.8, 0.7)  # hue 1/3 green .. 0 red
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _visible(token: str) -> str:
    return html.escape(token).replace("\n", "↵<br>").replace(" ", "&nbsp;") or "∅"


def sample_html(sample: StudentSample) -> str:
    spans = "".join(f"<span style='background-color:{token_colour(lp)}' title='teacher log-prob {lp:.2f}'>"
                    f"{_visible(tok)}</span>" for tok, lp in zip(sample.tokens, sample.teacher_log_probs))
    mean = sum(sample.teacher_log_probs) / max(1, len(sample.teacher_log_probs))
    return (f"<p><b>step {sample.step}</b> · mean teacher log-prob {mean:.2f}<br>"
            f"<span style='color:gray'>…{html.escape(sample.prompt)}</span>{spans}</p>")


class StudentSamplesView(QTextBrowser):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.samples: list[StudentSample] = []
        self.setPlaceholderText("With on-policy batches, the student's own completions appear here, each token "
                                "coloured by the teacher's log-probability of it.")
        self.setMaximumHeight(150)

    def add_sample(self, sample: StudentSample) -> None:
        self.samples = (self.samples + [sample])[-KEPT:]
        self.setHtml("".join(sample_html(s) for s in reversed(self.samples)))

    def clear_samples(self) -> None:
        self.samples = []
        self.clear()

    def handlers(self) -> dict:
        return {StudentSample: self.add_sample}
