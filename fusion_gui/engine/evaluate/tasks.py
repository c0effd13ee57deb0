"""Score a model on a task file (task_files.py): multiple choice by log-likelihood (acc, acc_norm as
lm-evaluation-harness computes them), generation by exact match, perplexity on a text file.

Jobs are generators: StepProgress per batch, one EvalRow per metric, the rows returned. Batched,
on the GPU when there is one. An EvalRow's metric is "<task>/<metric>", e.g. "arc/acc_norm".
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator
from pathlib import Path

import torch

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.evaluate.loglikelihood import encode_pair, loglikelihoods
from fusion_gui.engine.evaluate.task_files import ChoiceExample, TaskFile, TaskSettings, load_task, read_examples
from fusion_gui.events import Event, EvalRow, StepProgress

__all__ = ["TaskFile", "TaskSettings", "load_task", "run_task", "score_task_file"]

TARGET_DELIMITER = " "  # lm-eval's default between a question and its answer


def run_task(model, tokenizer, task: TaskFile, *, label: str, batch_size: int = 16,
             cancel=None) -> Generator[Event, None, tuple[EvalRow, ...]]:
    """Generator: score an already loaded model on a checked task file; returns its EvalRows."""
    if task.kind == "perplexity":
        from fusion_gui.engine.evaluate.scoring import perplexity

        row = yield from perplexity(label, task.path, batch_size=batch_size, label=label, cancel=cancel,
                                    loaded=(model, tokenizer))
        return (EvalRow(label, f"{task.name}/perplexity", row.value, row.n),)
    if task.settings.chat_template and not getattr(tokenizer, "chat_template", None):
        raise InputError(f"{label}'s tokenizer has no chat template: evaluate it without the chat template switch.")
    examples = read_examples(task)
    if task.kind == "choice":
        rows = yield from _choice(model, tokenizer, task, examples, label, batch_size, cancel)
    else:
        rows = yield from _generation(model, tokenizer, task, examples, label, batch_size, cancel)
    for row in rows:
        yield row
    return rows


def _context(tokenizer, query: str, settings: TaskSettings) -> str:
    if not settings.chat_template:
        return query
    return tokenizer.apply_chat_template([{"role": "user", "content": query}], tokenize=False,
                                         add_generation_prompt=True)


def _choice(model, tokenizer, task, examples: list[ChoiceExample], label, batch_size, cancel):
    delimiter = "" if task.settings.chat_template else TARGET_DELIMITER
    pairs, owner = [], []
    for k, example in enumerate(examples):
        context = _context(tokenizer, example.query, task.settings)
        for choice in example.choices:
            pairs.append(encode_pair(tokenizer, context, delimiter + choice))
            owner.append(k)
    scores = [0.0] * len(pairs)
    start, stage = time.perf_counter(), f"{task.name}: {label}"
    for done, batch in loglikelihoods(model, pairs, batch_size=batch_size, pad_id=_pad(tokenizer), cancel=cancel):
        for index, value in batch:
            scores[index] = value
        yield StepProgress(stage, done, len(pairs), time.perf_counter() - start)
    acc = acc_norm = 0
    position = 0
    for example in examples:
        lls = scores[position:position + len(example.choices)]
        position += len(example.choices)
        # acc_norm divides by the choice's length in characters, as lm-eval does
        normed = [ll / len(choice) for ll, choice in zip(lls, example.choices)]
        acc += _argmax(lls) == example.answer
        acc_norm += _argmax(normed) == example.answer
    n = len(examples)
    return (EvalRow(label, f"{task.name}/acc", acc / n, n), EvalRow(label, f"{task.name}/acc_norm", acc_norm / n, n))


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def _pad(tokenizer) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if isinstance(value, int):
            return value
    return 0


@torch.no_grad()
def _generation(model, tokenizer, task, examples, label, batch_size, cancel):
    """Greedy completions, left-padded in batches of similar length; exact match after the stop
    sequences and the extraction regex."""
    if not model.can_generate():
        raise InputError(f"{label} cannot generate text (it is not a generative language model).")
    settings, device = task.settings, next(model.parameters()).device
    prompts = [_context(tokenizer, e.prompt, settings) for e in examples]
    encoded = [tokenizer(p, add_special_tokens=not settings.chat_template)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    texts = [""] * len(encoded)
    start, stage, pad = time.perf_counter(), f"{task.name}: {label}", _pad(tokenizer)
    for first in range(0, len(order), batch_size):
        if cancel is not None:
            cancel.raise_if_cancelled()
        batch = order[first:first + batch_size]
        width = max(len(encoded[i]) for i in batch)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in batch], device=device)
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch], device=device)
        out = model.generate(ids, attention_mask=mask, max_new_tokens=settings.max_new_tokens, do_sample=False,
                             pad_token_id=pad)
        for row, i in enumerate(batch):
            texts[i] = tokenizer.decode(out[row, width:].tolist(), skip_special_tokens=True)
        yield StepProgress(stage, min(first + batch_size, len(order)), len(order), time.perf_counter() - start)
    correct = sum(extract(text, settings) == e.answer.strip() for text, e in zip(texts, examples))
    return (EvalRow(label, f"{task.name}/exact_match", correct / len(examples), len(examples)),)


def extract(text: str, settings: TaskSettings) -> str:
    """The answer in a completion: cut at the first stop sequence, then the regex's first group
    (or whole match) when there is a regex; stripped of surrounding whitespace."""
    for stop in settings.stop:
        if stop and stop in text:
            text = text[: text.index(stop)]
    if settings.regex:
        match = re.search(settings.regex, text)
        if match is None:
            return ""
        text = match.group(1) if match.groups() else match.group(0)
    return text.strip()


def score_task_file(ref: str | Path, task: TaskFile, *, device: str = "auto", batch_size: int = 16,
                    label: str | None = None, cancel=None, loaded=None):
    """Generator: load a model (unless `loaded`) and score it on a task file; returns its EvalRows."""
    from fusion_gui.engine.evaluate.scoring import load_causal_lm, model_labels

    model, tokenizer = loaded or load_causal_lm(ref, device)
    return (yield from run_task(model, tokenizer, task, label=label or model_labels([str(ref)])[0],
                                batch_size=batch_size, cancel=cancel))
