"""Evaluate models on tasks through the history's score cache: what the CLI's `eval` and the app's
Evaluate view run. Qt-free; a generator like every job.

A task is a task file (tasks.py: multiple choice, generation, perplexity) or an lm-eval task
("lm-eval:NAME"). Each model is loaded once, and not at all when every task's scores are cached.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.evaluate.task_files import TaskFile, TaskSettings, load_task, task_hash
from fusion_gui.engine.io.resolve import resolve_model_path
from fusion_gui.events import EvalResult, EvalRow, Event, Log
from fusion_gui.session.eval_cache import evaluate_cached
from fusion_gui.session.history import History

LM_EVAL_PREFIX = "lm-eval:"


@dataclass(frozen=True)
class HarnessTask:
    """An lm-eval task by name: one of lm-eval's own, or (with include_path) one from a folder of task YAMLs."""

    name: str
    include_path: str | None = None
    limit: int | None = None
    num_fewshot: int | None = None
    chat_template: bool = False

    def hash(self) -> str:
        """Name, settings, lm-eval's version and the task folder's YAML bytes (a local task's data
        file is named in its YAML; its content is not read here)."""
        import importlib.metadata

        digest = hashlib.sha256(json.dumps({
            "name": self.name, "limit": self.limit, "fewshot": self.num_fewshot, "chat": self.chat_template,
            "lm_eval": importlib.metadata.version("lm_eval")}, sort_keys=True).encode())
        if self.include_path:
            for yaml_file in sorted(Path(self.include_path).rglob("*.y*ml")):
                digest.update(yaml_file.read_bytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class EvalOptions:
    device: str = "auto"
    batch_size: int = 16
    allow_download: bool = False  # lm-eval tasks may fetch their datasets
    use_cache: bool = True  # False: score again even when the history has the scores
    hashes: dict[str, str] = field(default_factory=dict)  # filled in: model label -> content hash


def parse_task(spec: str, settings: TaskSettings = TaskSettings(), include_path: str | None = None
               ) -> TaskFile | HarnessTask:
    """"lm-eval:NAME" or a task file path, checked now (a bad line is named before any model loads)."""
    if spec.startswith(LM_EVAL_PREFIX):
        name = spec[len(LM_EVAL_PREFIX):].strip()
        if not name:
            raise InputError("Name the lm-eval task after 'lm-eval:', e.g. lm-eval:arc_easy.")
        return HarnessTask(name, include_path, settings.limit, None, settings.chat_template)
    return load_task(spec, settings)


def evaluate_models(refs: Sequence[str], tasks: Sequence[TaskFile | HarnessTask], history: History | None,
                    options: EvalOptions = EvalOptions(), cancel=None) -> Generator[Event, None, EvalResult]:
    """Generator: every task's scores for every model (cached ones from the history); returns EvalResult.
    options.hashes is filled with each model's content hash (for recording the run)."""
    from fusion_gui.engine.evaluate.scoring import model_labels

    if not refs or not tasks:
        raise InputError("Name at least one model and one task to evaluate.")
    paths = [resolve_model_path(str(r)) for r in refs]  # a missing model fails before anything runs
    start, rows = time.perf_counter(), []
    for ref, path, label in zip(refs, paths, model_labels([str(r) for r in refs])):
        if cancel is not None:
            cancel.raise_if_cancelled()
        loaded: list = []  # the model, loaded at the first task that is not cached

        def model():
            if not loaded:
                from fusion_gui.engine.evaluate.scoring import load_causal_lm

                loaded.append(load_causal_lm(ref, options.device))
            return loaded[0]

        if history is not None:
            options.hashes[label] = history.model_hash(path)
        for task in tasks:
            job = _job(task, model, label, options, cancel)
            if history is None or not options.use_cache:
                got = yield from job()
            else:
                digest = task.hash() if isinstance(task, HarnessTask) else task_hash(task)
                got = yield from evaluate_cached(history, path, digest, job, label)
            rows.extend(got)
        loaded.clear()
        yield Log(f"{label}: done.")
    return EvalResult(tuple(rows), (), time.perf_counter() - start)


def _job(task, model, label: str, options: EvalOptions, cancel):
    def run() -> Generator[Event, None, tuple[EvalRow, ...]]:
        lm, tokenizer = model()
        if isinstance(task, HarnessTask):
            from fusion_gui.engine.evaluate.harness import run_harness

            return (yield from run_harness(
                lm, tokenizer, [task.name], label=label, include_path=task.include_path,
                builtin=task.include_path is None, allow_download=options.allow_download, batch_size=options.batch_size, limit=task.limit,
                num_fewshot=task.num_fewshot, chat_template=task.chat_template, cancel=cancel))
        from fusion_gui.engine.evaluate.tasks import run_task

        return (yield from run_task(lm, tokenizer, task, label=label, batch_size=options.batch_size,
                                    cancel=cancel))
    return run
