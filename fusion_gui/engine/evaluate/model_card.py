"""What evaluation adds to a model card (README.md): the smoke check's verdict as a section, and
scores in the Hub's `model-index` front matter (written by huggingface_hub's ModelCard, so the
Hub's leaderboard and widgets read them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusion_gui.events import SmokeVerdict

_SMOKE_HEADING = "## Smoke check"


@dataclass(frozen=True)
class CardScore:
    """One score for the model-index: the task (a dataset name), the metric and its value."""

    task: str  # e.g. "arc_easy" or a task file's name
    metric: str  # e.g. "acc", "acc_norm", "exact_match", "perplexity"
    value: float
    split: str | None = None


def add_smoke_section(readme: Path, verdict: SmokeVerdict) -> None:
    """Append (or replace) the smoke check's section: verdict, reasons and the checks' findings."""
    text = readme.read_text(encoding="utf-8")
    if _SMOKE_HEADING in text:  # a re-run replaces the old section, up to the next heading
        head, _, rest = text.partition(_SMOKE_HEADING)
        after = rest.find("\n## ")
        text = head.rstrip() + "\n" + (rest[after:] if after >= 0 else "")
    lines = ["", _SMOKE_HEADING, "", f"Verdict: **{verdict.verdict}** (checked by fusion_gui right after "
                                     f"the model was written, in {verdict.seconds:.1f} s).", ""]
    lines += [f"- {c.name}: {c.status}. {c.detail}" for c in verdict.checks]
    readme.write_text(text.rstrip() + "\n" + "\n".join(lines) + "\n", encoding="utf-8")


def add_model_index(readme: Path, model_name: str, scores: list[CardScore]) -> None:
    """Put scores into README.md's front matter as a `model-index` entry, keeping everything else;
    a score for a (task, metric) already there is replaced, not repeated."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    card = ModelCard(readme.read_text(encoding="utf-8")) if readme.is_file() else ModelCard("---\n---\n")
    data: ModelCardData = card.data
    new = {(s.task, s.metric) for s in scores}
    kept = [r for r in (data.eval_results or []) if (r.dataset_name, r.metric_type) not in new]
    data.eval_results = kept + [
        EvalResult(task_type="text-generation", task_name="Text Generation", dataset_type=s.task,
                   dataset_name=s.task, dataset_split=s.split, metric_type=s.metric, metric_value=float(s.value),
                   metric_name=s.metric) for s in scores]
    data.model_name = data.model_name or model_name
    card.save(readme)


def card_scores(rows) -> list[CardScore]:
    """EvalRows ("<task>/<metric>") as model-index scores; rows without a task use the metric as both."""
    scores = []
    for row in rows:
        task, _, metric = row.metric.rpartition("/")
        scores.append(CardScore(task or metric, metric, row.value))
    return scores
