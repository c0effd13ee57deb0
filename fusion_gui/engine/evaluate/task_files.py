"""Task files that need no harness: what they hold, how they are read and checked, and their hash.

- multiple choice (JSONL): {"query": ..., "choices": [...], "answer": index or the right choice};
  scored by log-likelihood as lm-evaluation-harness does (acc and acc_norm);
- generation (JSONL): {"prompt": ..., "answer": ...}; greedy completion, exact match, optionally
  after an extraction regex;
- perplexity: any text file (.txt, .md, ...).

Every line is checked before any model is loaded; a bad one is named by its line number.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fusion_gui.engine.errors import InputError

SCORER_VERSION = 1  # bump when scoring changes, so cached scores of the old scorer are not reused
_QUERY_KEYS = ("query", "question", "context", "prompt", "input")
_ANSWER_KEYS = ("answer", "gold", "label", "target", "output")


@dataclass(frozen=True)
class TaskSettings:
    """How a task file is scored; part of the task hash (the batch size and device are not: they
    change speed, not scores)."""

    regex: str | None = None  # generation: exact match on this pattern's first group (or whole match)
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ("\n\n",)  # a generation is cut at the first of these
    chat_template: bool = False  # wrap each query in the tokenizer's chat template
    limit: int | None = None  # score only the first N examples


@dataclass(frozen=True)
class ChoiceExample:
    query: str
    choices: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class GenerationExample:
    prompt: str
    answer: str


@dataclass(frozen=True)
class TaskFile:
    path: Path
    kind: str  # "choice" | "generation" | "perplexity"
    settings: TaskSettings = field(default_factory=TaskSettings)

    @property
    def name(self) -> str:
        return self.path.stem


def load_task(path: str | Path, settings: TaskSettings = TaskSettings()) -> TaskFile:
    """Open and check a task file (every line, for JSONL): a bad line raises InputError naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"No such task file: {path}")
    if settings.regex is not None:
        try:
            re.compile(settings.regex)
        except re.error as err:
            raise InputError(f"The extraction regex {settings.regex!r} is not a valid pattern ({err}).") from None
    if path.suffix.lower() not in (".jsonl", ".json"):
        return TaskFile(path, "perplexity", settings)
    examples = read_examples(TaskFile(path, "auto", settings))
    kind = "choice" if isinstance(examples[0], ChoiceExample) else "generation"
    return TaskFile(path, kind, settings)


def read_examples(task: TaskFile) -> list[ChoiceExample | GenerationExample]:
    """The examples of a JSONL task file (the first `limit`), all of one kind."""
    examples, kind = [], None
    with open(task.path, "rb") as f:
        for number, raw in enumerate(f, 1):
            where = f"{task.path}, line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{where} is not UTF-8 text.") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as err:  # RecursionError: absurdly deep nesting
                reason = err.args[0] if isinstance(err, ValueError) else "nested too deeply"
                raise InputError(f"{where} is not valid JSON ({reason}).") from None
            if not isinstance(record, dict):
                raise InputError(f"{where} is not a JSON object.")
            example = _choice(record, where) if "choices" in record else _generation(record, where)
            this = type(example).__name__
            if kind is not None and this != kind:
                raise InputError(f"{where} mixes multiple choice and generation examples "
                                 f"(lines with and without 'choices').")
            kind = this
            examples.append(example)
            if task.settings.limit is not None and len(examples) >= task.settings.limit:
                break
    if not examples:
        raise InputError(f"{task.path} holds no examples.")
    return examples


def _field(record: dict, keys: tuple[str, ...], where: str, what: str):
    for key in keys:
        if key in record:
            return record[key]
    raise InputError(f"{where} has no {what} (one of the keys {', '.join(keys)}).")


def _choice(record: dict, where: str) -> ChoiceExample:
    query = _field(record, _QUERY_KEYS, where, "question")
    choices, answer = record["choices"], _field(record, _ANSWER_KEYS, where, "answer")
    if not isinstance(query, str):
        raise InputError(f"{where}: the question must be text.")
    if not (isinstance(choices, list) and len(choices) >= 2 and all(isinstance(c, str) and c for c in choices)):
        raise InputError(f"{where}: 'choices' must be a list of at least two non-empty texts.")
    if isinstance(answer, str) and answer in choices:  # the right choice's text
        answer = choices.index(answer)
    elif isinstance(answer, str) and not (answer.isascii() and answer.isdigit()):
        raise InputError(f"{where}: the answer {answer!r} is not one of the choices.")
    if isinstance(answer, bool) or not isinstance(answer, (int, str)) or not 0 <= int(answer) < len(choices):
        raise InputError(f"{where}: the answer must be a choice's index (0 to {len(choices) - 1}) or its text.")
    return ChoiceExample(query, tuple(choices), int(answer))


def _generation(record: dict, where: str) -> GenerationExample:
    prompt = _field(record, _QUERY_KEYS, where, "prompt")
    answer = _field(record, _ANSWER_KEYS, where, "answer")
    if not isinstance(prompt, str) or not prompt:
        raise InputError(f"{where}: the prompt must be non-empty text.")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise InputError(f"{where}: the answer must be text or a number.")
    return GenerationExample(prompt, str(answer))


def task_hash(task: TaskFile) -> str:
    """sha256 of the file's bytes, the scoring settings and the scorer's version: the score cache's key."""
    digest = hashlib.sha256()
    with open(task.path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    settings = {**asdict(task.settings), "kind": task.kind, "scorer": SCORER_VERSION}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()
