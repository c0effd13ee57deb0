"""The search's objectives on a loaded model, each with two disjoint example sets: "search" (what the
trials are scored on) and "held_out" (what the best candidates are re-scored on, never seen by the search).

Demo skills: problems from the skill's evaluation split (never trained on), the first `examples` for the
search and the next `held_out` for re-scoring. Task files and perplexity texts: every fifth example (or
line) is held out; both parts are written once into the output folder's data/ and scored with the
evaluation tasks' own code (engine/evaluate/tasks.py, scoring.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.search.settings import SKILLS, Objective, SearchSettings
from fusion_gui.engine.search.skill_batch import SkillBatch

SPLITS = ("search", "held_out")
_HOLD_EVERY = 5  # task files and texts: every fifth example or line is held out


@dataclass
class _Prepared:
    objective: Objective
    kind: str  # "skill" | "perplexity" | "task"
    data: dict  # split -> problems (skill) or a TaskFile / text path
    metric: str = ""


class Objectives:
    def __init__(self, settings: SearchSettings, data_dir: Path):
        self.settings = settings
        self.items = [self._prepare(o, data_dir) for o in settings.objectives]
        skills = [p for p in self.items if p.kind == "skill"]
        # every skill objective of a split is scored in one greedy batch, its prompts tokenized once per search
        self._skills = {split: SkillBatch([p.data[split] for p in skills]) for split in SPLITS} if skills else {}

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.settings.objectives]

    @property
    def directions(self) -> list[str]:
        return ["maximize" if o.maximize else "minimize" for o in self.settings.objectives]

    def _prepare(self, o: Objective, data_dir: Path) -> _Prepared:
        s = self.settings
        if o.task in SKILLS:
            from fusion_gui.engine.evaluate.demo import skill_examples

            problems = skill_examples(o.task, "eval", s.examples + s.held_out)
            if len(problems) < s.examples + s.held_out:
                raise InputError(f"The {o.task} skill has only {len(problems)} evaluation problems; ask for fewer "
                                 f"examples and held-out problems.")
            return _Prepared(o, "skill", {"search": problems[:s.examples], "held_out": problems[s.examples:]})
        data_dir.mkdir(parents=True, exist_ok=True)
        if o.name == "perplexity":
            text = Path(o.file if o.task == "perplexity" else o.task)
            lines = text.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
            parts = _split(lines)
            if not all("".join(p).strip() for p in parts.values()):
                raise InputError(f"The text {text} is too short to split into search and held-out parts.")
            paths = {}
            for split, part in parts.items():
                paths[split] = data_dir / f"perplexity-{split}.txt"
                paths[split].write_text("".join(part), encoding="utf-8")
            return _Prepared(o, "perplexity", paths)
        return self._task_file(o, data_dir)

    def _task_file(self, o: Objective, data_dir: Path) -> _Prepared:
        from fusion_gui.engine.evaluate.task_files import load_task

        task = load_task(o.task)  # checks every line
        if task.kind == "perplexity":
            raise InputError(f"{o.task} is a text: use it as {{task: perplexity, file: {o.task}}}.")
        metric = o.metric or ("acc_norm" if task.kind == "choice" else "exact_match")
        if (task.kind == "choice") != (metric in ("acc", "acc_norm")):
            raise InputError(f"{o.task} is a {task.kind} task; metric {metric} does not apply to it.")
        records = [line for line in Path(o.task).read_text(encoding="utf-8").splitlines(keepends=True) if line.strip()]
        parts = _split(records)
        limits = {"search": self.settings.examples, "held_out": self.settings.held_out}
        files = {}
        for split, part in parts.items():
            if not part:
                raise InputError(f"{o.task} has too few examples to hold some out ({len(records)}; "
                                 f"at least {_HOLD_EVERY} are needed).")
            path = data_dir / f"{Path(o.task).stem}-{split}.jsonl"
            path.write_text("".join(part[:limits[split]]), encoding="utf-8")
            files[split] = load_task(path)
        return _Prepared(o, "task", files, metric)

    def score(self, model, tokenizer, split: str, cancel: CancelToken | None = None) -> dict[str, float]:
        """{objective name: score} of a loaded model on one split."""
        skills = iter(self._skills[split].accuracies(model, tokenizer, cancel) if self._skills else ())
        scores = {}
        for p in self.items:
            scores[p.objective.name] = (next(skills) if p.kind == "skill"
                                        else self._score_one(p, model, tokenizer, split, cancel))
        return scores

    def _score_one(self, p: _Prepared, model, tokenizer, split: str, cancel) -> float:
        if p.kind == "perplexity":
            from fusion_gui.engine.evaluate.scoring import perplexity

            return _drain(perplexity("candidate", p.data[split], label="candidate", cancel=cancel,
                                     loaded=(model, tokenizer))).value
        from fusion_gui.engine.evaluate.tasks import run_task

        rows = _drain(run_task(model, tokenizer, p.data[split], label="candidate", cancel=cancel))
        wanted = f"{p.data[split].name}/{p.metric}"
        return next(r.value for r in rows if r.metric == wanted)


def _split(items: list) -> dict[str, list]:
    return {"search": [x for i, x in enumerate(items) if i % _HOLD_EVERY != _HOLD_EVERY - 1],
            "held_out": [x for i, x in enumerate(items) if i % _HOLD_EVERY == _HOLD_EVERY - 1]}


def _drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
