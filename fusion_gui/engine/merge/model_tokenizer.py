"""One model's tokenizer and vocabulary size, read offline: where its tokenizer files are, loading
them, how many embedding rows the vocabulary has, and its hidden size."""

from __future__ import annotations

from pathlib import Path

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.reader import ModelReader

VOCAB_KEYS = ("vocab_size", "n_vocab", "padded_vocab_size")
_HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model")
# Any one of these makes a folder a tokenizer folder for AutoTokenizer
_TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model",
                      "sentencepiece.bpe.model", "vocab.json", "vocab.txt")


def config_vocab(reader: ModelReader) -> tuple[str, int] | None:
    """(config key, value) of the model's vocabulary size: the rows of its embedding."""
    config = reader.config or {}
    for key in VOCAB_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return key, value
    return None


def tokenizer_folder(reader: ModelReader) -> Path | None:
    """The folder holding the model's tokenizer files (its own, or a LoRA adapter's base's), or None."""
    folders = [reader.path] if reader.path.is_dir() else []
    base = getattr(reader, "base", None)  # a LoRA adapter without its own tokenizer uses its base's
    if base is not None and base.path.is_dir():
        folders.append(base.path)
    return next((f for f in folders if any((f / m).is_file() for m in _TOKENIZER_MARKERS)), None)


def load_tokenizer(reader: ModelReader):
    """The model's tokenizer, offline; InputError naming the model when it has none."""
    from transformers import AutoTokenizer

    folder = tokenizer_folder(reader)
    if folder is None:
        raise InputError(f"Model '{reader.label}' has no tokenizer files (tokenizer.json, tokenizer.model, "
                         f"vocab.json, ...), and merging vocabularies needs one.")
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # transformers raises many kinds for a broken tokenizer folder
        raise InputError(f"The tokenizer of model '{reader.label}' could not be loaded ({err}).") from None


def vocab_rows(reader: ModelReader, tokenizer) -> int:
    """Embedding rows: the config's vocabulary size, else the tokenizer's length."""
    found = config_vocab(reader)
    return found[1] if found else len(tokenizer.get_vocab())


def usable_vocab(tokenizer, rows: int) -> dict[str, int]:
    """token -> id for the tokens that have an embedding row."""
    return {tok: i for tok, i in tokenizer.get_vocab().items() if i < rows}


def hidden_size(reader: ModelReader) -> int | None:
    config = reader.config or {}
    return next((config[k] for k in _HIDDEN_KEYS if isinstance(config.get(k), int)), None)
