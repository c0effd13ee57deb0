"""Benchmarks users know, through lm-evaluation-harness's Python API, on a model already loaded.

Only tasks whose data are local run (the user's datasets cache or local files): the Hub and
datasets are switched offline while the harness runs unless downloads were allowed, and a task
whose data are missing says what it needs and where it would come from. lm-eval is an optional
extra (`pip install 'fusion-gui[eval]'`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Generator, Iterator
from pathlib import Path

from fusion_gui.engine.errors import InputError
from fusion_gui.events import Event, EvalRow, Log, StepProgress

_OFFLINE_VARS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def task_manager(include_path: str | Path | None = None, builtin: bool = True):
    """lm-eval's TaskManager over its own tasks and/or a folder of task YAMLs. Indexing lm-eval's
    thousands of task files takes seconds, so the index of its own tasks alone is built once per process
    (a folder of the user's is read again each time: its files may have changed)."""
    if include_path is not None and not Path(include_path).exists():
        raise InputError(f"No such task folder: {include_path}")
    if include_path is None and builtin:
        return _builtin_tasks()
    return _task_manager(str(include_path) if include_path else None, builtin)


@functools.lru_cache(maxsize=1)
def _builtin_tasks():
    return _task_manager(None, True)


def _task_manager(include_path: str | None, builtin: bool):
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise InputError("lm-evaluation-harness is not installed: pip install 'fusion-gui[eval]'.") from None
    return TaskManager(include_path=include_path, include_defaults=builtin)


@contextlib.contextmanager
def offline(allowed: bool) -> Iterator[None]:
    """The Hub and datasets offline for the duration, unless downloads are allowed. The libraries read
    their flags at import, so their constants are switched too, then restored."""
    if allowed:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved_env = {k: os.environ.get(k) for k in _OFFLINE_VARS}
    saved = (datasets.config.HF_DATASETS_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    os.environ.update({k: "1" for k in _OFFLINE_VARS})
    datasets.config.HF_DATASETS_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_DATASETS_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def data_source(manager, name: str) -> str:
    """Where a task's data would come from, in words, from its config."""
    entry = manager.task_index.get(name)
    cfg = (entry.cfg or {}) if entry else {}
    path, config = cfg.get("dataset_path"), cfg.get("dataset_name")
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if files:
        return f"the local files {files}"
    if path:
        from datasets.config import HF_DATASETS_CACHE

        what = f"the dataset '{path}'" + (f" (config '{config}')" if config else "")
        return (f"{what}, which is not in the local datasets cache ({HF_DATASETS_CACHE}); it would be "
                f"downloaded from https://huggingface.co/datasets/{path}")
    return "data its config does not name"


def run_harness(model, tokenizer, tasks: list[str], *, label: str, include_path: str | Path | None = None,
                builtin: bool = True, allow_download: bool = False, batch_size: int = 16,
                limit: int | None = None, num_fewshot: int | None = None, chat_template: bool = False,
                cancel=None) -> Generator[Event, None, tuple[EvalRow, ...]]:
    """Generator: lm-eval's scores for `tasks` on a loaded model; returns one EvalRow per metric
    ("<task>/<metric>", e.g. "arc_easy/acc_norm"). The cancel token is checked at every batch."""
    start = time.perf_counter()
    manager = task_manager(include_path, builtin)
    unknown = [t for t in tasks if t not in manager.task_index]
    if unknown:
        raise InputError(f"lm-eval has no task {unknown[0]!r}" + (f" (looked in {include_path} too)."
                                                                  if include_path else "."))
    if chat_template and not getattr(tokenizer, "chat_template", None):
        raise InputError(f"{label}'s tokenizer has no chat template: evaluate it without the chat template switch.")
    from lm_eval import simple_evaluate

    lm = _cancellable_lm(model, tokenizer, batch_size, cancel)
    yield Log(f"lm-eval: {', '.join(tasks)} on {label} ...")
    with offline(allow_download):
        for name in tasks:  # build each task first: missing data is named before any scoring
            try:
                (getattr(manager, "load", None) or manager.load_task_or_group)([name])  # older lm-eval: load_task_or_group
            except Exception as err:  # noqa: BLE001 - datasets raises many kinds for missing data
                raise InputError(f"Task {name} needs {data_source(manager, name)}; it could not be loaded "
                                 f"({type(err).__name__}).") from None
        results = simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit, num_fewshot=num_fewshot,
                                  apply_chat_template=chat_template, log_samples=False, bootstrap_iters=0,
                                  cache_requests=False)
    rows = []
    for task, metrics in (results or {}).get("results", {}).items():
        n = int((results.get("n-samples", {}).get(task) or {}).get("effective", 0))
        scored = set((results.get("higher_is_better", {}).get(task) or {}))  # metrics, not bookkeeping
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if metric not in scored or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            suffix = "" if filt in ("", "none") else f"[{filt}]"
            rows.append(EvalRow(label, f"{task}/{metric}{suffix}", float(value), n))
    yield StepProgress(f"lm-eval: {label}", 1, 1, time.perf_counter() - start)
    for row in rows:
        yield row
    return tuple(rows)


def _cancellable_lm(model, tokenizer, batch_size: int, cancel):
    """lm-eval's HFLM around the loaded model; every forward pass checks the cancel token first."""
    from lm_eval.models.huggingface import HFLM

    class CancellableHFLM(HFLM):
        def _model_call(self, *args, **kwargs):
            if cancel is not None:
                cancel.raise_if_cancelled()
            return super()._model_call(*args, **kwargs)

        def _model_generate(self, *args, **kwargs):
            if cancel is not None:
                cancel.raise_if_cancelled()
            return super()._model_generate(*args, **kwargs)

    return CancellableHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
