"""Training text: read documents, encode each as the tokenizer would, pack into fixed-length blocks
(with labels: -100 where a token carries no loss), hold some out for eval."""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.parse_text import jsonl_lines


def read_documents(path: str | Path, text_field: str = "text") -> list[str]:
    """Documents from a .txt file (one per non-empty line), a .jsonl file (one object per line with
    `text_field`) or a folder written by `datasets.save_to_disk` (a column `text_field`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Data '{path}' does not exist.")
    if path.is_dir():
        docs = _read_dataset_folder(path, text_field)
    elif path.suffix == ".jsonl":
        docs = _read_jsonl(path, text_field)
    else:
        try:
            docs = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"Cannot read data file '{path}': {err}.") from err
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise InputError(f"Data '{path}' holds no text.")
    return docs


def _read_jsonl(path: Path, text_field: str) -> list[str]:
    docs = []
    for number, row in jsonl_lines(path):
        if not isinstance(row, dict) or text_field not in row:
            raise InputError(f"Line {number} of '{path}' has no text field '{text_field}' "
                             f"(set data.text_field to the field that holds the text).")
        if not isinstance(row[text_field], str):
            raise InputError(f"Field '{text_field}' on line {number} of '{path}' is not a string.")
        docs.append(row[text_field])
    return docs


def _read_dataset_folder(path: Path, text_field: str) -> list[str]:
    try:
        import datasets
    except ImportError as err:  # only this input format needs it
        raise InputError(f"Reading the dataset folder '{path}' needs the 'datasets' package.") from err
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise InputError(f"'{path}' is not a folder written by datasets.save_to_disk: {err}.") from err
    if isinstance(ds, datasets.DatasetDict):  # a DatasetDict: train on its "train" split, or the first
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    if text_field not in ds.column_names:
        raise InputError(f"Dataset '{path}' has no text field '{text_field}' "
                         f"(its columns: {', '.join(ds.column_names)}).")
    return [t for t in ds[text_field] if isinstance(t, str)]


def encode_document(tokenizer, text: str) -> list[int]:
    """A document as the tokenizer encodes it on its own (its special tokens, e.g. a leading BOS,
    included: the student sees them at inference), ending with EOS where the tokenizer adds none."""
    ids = list(tokenizer(text)["input_ids"])
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return ids


def leading_special_tokens(tokenizer) -> list[int]:
    """What the tokenizer puts before any text of an input (a BOS for Llama-style ones, else nothing)."""
    ids = list(tokenizer("")["input_ids"])
    eos = tokenizer.eos_token_id
    while ids and eos is not None and ids[-1] == eos:
        ids.pop()
    return ids


def pack_examples(examples, seq_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Join (ids, loss mask) examples into one stream and cut it into [n, seq_length] blocks of
    input ids and labels (-100 where a token carries no loss). The tail that fills no block is dropped."""
    ids: list[int] = []
    labels: list[int] = []
    for example_ids, mask in examples:
        ids.extend(example_ids)
        labels.extend(t if m else -100 for t, m in zip(example_ids, mask))
    n = len(ids) // seq_length
    return (torch.tensor(ids[: n * seq_length], dtype=torch.long).view(n, seq_length),
            torch.tensor(labels[: n * seq_length], dtype=torch.long).view(n, seq_length))


def pack(docs: list[str], tokenizer, seq_length: int) -> torch.Tensor:
    """Encode every document as its own input (encode_document) and cut the joined stream into
    [n, seq_length] blocks (the tail that does not fill a block is dropped)."""
    encoded = [encode_document(tokenizer, d) for d in docs]
    return pack_examples([(ids, [True] * len(ids)) for ids in encoded], seq_length)[0]


class Blocks(torch.utils.data.Dataset):
    """Packed blocks as a causal-LM dataset: labels are the inputs (the model shifts them), -100
    where a token carries no loss (a chat's prompt and user turns)."""

    def __init__(self, blocks: torch.Tensor, labels: torch.Tensor | None = None):
        self.blocks = blocks
        self.labels = blocks if labels is None else labels

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.blocks[i], "labels": self.labels[i]}

    @property
    def loss_tokens(self) -> int:
        """Tokens that are a prediction target (the first of each block never is)."""
        return int((self.labels[:, 1:] != -100).sum())


def read_examples(path, text_field: str, tokenizer) -> list[tuple[list[int], list[bool]]]:
    """(ids, loss mask) per example: chat or prompt/completion rows of a .jsonl (chat_data.py) or
    plain documents, every token of which carries loss."""
    from fusion_gui.engine.distill.chat_data import jsonl_kind, read_chat_examples

    if Path(path).suffix == ".jsonl" and Path(path).is_file() and jsonl_kind(path) != "text":
        return read_chat_examples(path, tokenizer)
    return [(ids, [True] * len(ids)) for ids in (encode_document(tokenizer, d)
                                                  for d in read_documents(path, text_field))]


def load_blocks(path, text_field: str, tokenizer, seq_length: int, eval_fraction: float,
                seed: int) -> tuple[Blocks, Blocks]:
    """(train, eval) datasets. The held-out blocks are a seeded random choice, at least one."""
    blocks, labels = pack_examples(read_examples(path, text_field, tokenizer), seq_length)
    if len(blocks) < 2:
        raise InputError(f"Data '{path}' is too short: it makes {len(blocks)} block(s) of {seq_length} tokens; "
                         f"at least 2 are needed (one to train on, one to hold out).")
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(blocks) - 1, max(1, math.ceil(eval_fraction * len(blocks))))
    train, held = sorted(order[n_eval:]), sorted(order[:n_eval])
    return Blocks(blocks[train], labels[train]), Blocks(blocks[held], labels[held])


def token_difference(token: str, teacher_id: int | None, student_id: int | None) -> str:
    """How one token differs between the two vocabularies, as a clause of a sentence."""
    if teacher_id is None:
        return f"token {token!r} is missing from the teacher's and has id {student_id} in the student's"
    if student_id is None:
        return f"token {token!r} has id {teacher_id} in the teacher's and is missing from the student's"
    return f"token {token!r} has id {teacher_id} in the teacher's and id {student_id} in the student's"


def check_tokenizers(teacher: str, student: str):
    """Load both tokenizers (files only, no weights) and insist they map the same tokens to the
    same ids; returns (tokenizer, output rows both models share: the logits the losses compare)."""
    from transformers import AutoConfig, AutoTokenizer

    loaded = []
    for role, path in (("teacher", teacher), ("student", student)):
        if not (Path(path) / "config.json").is_file():
            raise InputError(f"The {role} '{path}' is not a model folder (no config.json).")
        try:
            loaded.append((AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path)))
        except (OSError, ValueError) as err:
            raise InputError(f"Cannot load the {role}'s tokenizer from '{path}': {err}") from err
    (t_tok, t_cfg), (s_tok, s_cfg) = loaded
    t_vocab, s_vocab = t_tok.get_vocab(), s_tok.get_vocab()
    if t_vocab != s_vocab:
        diff = next((tok for tok in sorted(set(t_vocab) | set(s_vocab)) if t_vocab.get(tok) != s_vocab.get(tok)), None)
        raise InputError(
            f"Teacher '{teacher}' and student '{student}' use different vocabularies: the teacher's has "
            f"{len(t_vocab)} tokens and the student's {len(s_vocab)}; "
            f"{token_difference(diff, t_vocab.get(diff), s_vocab.get(diff))}. Distillation needs the same tokenizer.")
    vocab, shared = len(s_tok), []
    for role, path, cfg in (("teacher", teacher, t_cfg), ("student", student, s_cfg)):
        rows = getattr(cfg.get_text_config(), "vocab_size", None)
        if rows is not None and rows < vocab:
            raise InputError(f"The {role} '{path}' has {rows} embedding rows, fewer than the tokenizer's "
                             f"{vocab} tokens.")
        shared.append(rows or vocab)
    # every row both models have: a padded row no text uses still takes probability at inference,
    # so the student must learn the teacher's (near zero) mass there too
    return s_tok, min(shared)
