"""The smoke check's checks that need no model loaded: the tokenizer, its token ids against the
embedding, config.json against the tensors, and every tensor finite (read one at a time).

Each check returns a SmokeCheck; the tokenizer check also returns the loaded tokenizer for the
checks that run the model (smoke.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.naming import count_layers, layer_of
from fusion_gui.events import SmokeCheck

ROUND_TRIP_TEXT = "The quick brown fox jumps over the lazy dog; 12 + 30 = 42."
_VOCAB_KEYS = ("vocab_size", "n_vocab", "padded_vocab_size")
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
_EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "tok_embeddings.weight",
                       "embed_in.weight")


def text_config(config: dict | None) -> dict:
    """The language model's part of a config (multimodal configs nest it under text_config)."""
    config = config or {}
    nested = config.get("text_config")
    return {**config, **nested} if isinstance(nested, dict) else config


def embedding_rows(reader: ModelReader) -> tuple[str, int] | None:
    """(tensor name, rows) of the token embedding, found by name."""
    for name, info in reader.tensors.items():
        if name.endswith(_EMBEDDING_SUFFIXES) and layer_of(name) is None and len(info.shape) == 2:
            return name, info.shape[0]
    return None


def check_tokenizer(folder: Path):
    """(SmokeCheck, tokenizer or None): the tokenizer loads offline and gives back the text it encoded.
    The comparison ignores whitespace: character-level tokenizers without a decoder space their output."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        if not any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                                                     "vocab.json", "vocab.txt")):
            return SmokeCheck("tokenizer", "suspicious", "The model has no tokenizer files."), None
        return SmokeCheck("tokenizer", "broken", f"The tokenizer does not load: {err}"), None
    try:
        ids = tokenizer(ROUND_TRIP_TEXT, add_special_tokens=False)["input_ids"]
        back = tokenizer.decode(ids, skip_special_tokens=True)
    except Exception as err:  # noqa: BLE001 - any failure of a tokenizer's own code is the finding
        return SmokeCheck("tokenizer", "broken", f"The tokenizer fails on plain text: {err}"), tokenizer
    if "".join(back.split()) != "".join(ROUND_TRIP_TEXT.split()):
        return SmokeCheck("tokenizer", "suspicious",
                          f"The tokenizer does not round-trip text: {ROUND_TRIP_TEXT!r} came back as {back!r}."
                          ), tokenizer
    return SmokeCheck("tokenizer", "ok", f"Loads and round-trips text ({len(ids)} tokens)."), tokenizer


def check_token_ids(tokenizer, reader: ModelReader) -> SmokeCheck:
    """Every id the tokenizer can emit (its vocabulary plus added tokens) indexes a row of the embedding."""
    found = embedding_rows(reader)
    if found is None:
        return SmokeCheck("token ids", "skipped", "No token embedding tensor was found by name.")
    name, rows = found
    highest = max(max(tokenizer.get_vocab().values(), default=-1), len(tokenizer) - 1)
    if highest >= rows:
        return SmokeCheck("token ids", "broken", f"The tokenizer emits ids up to {highest}, but '{name}' has "
                                                 f"only {rows} rows: those tokens have no embedding.")
    return SmokeCheck("token ids", "ok", f"Every token id (up to {highest}) is below the {rows} embedding rows.")


def check_config(reader: ModelReader) -> SmokeCheck:
    """config.json's vocabulary size, layer count and dtype against the tensors themselves."""
    if reader.config is None:
        return SmokeCheck("config", "broken", "There is no config.json: transformers cannot load the model.")
    config, problems, broken = text_config(reader.config), [], False
    vocab = next((config[k] for k in _VOCAB_KEYS if isinstance(config.get(k), int)), None)
    found = embedding_rows(reader)
    if vocab is not None and found is not None and vocab != found[1]:
        problems.append(f"config.json says vocab_size {vocab}, but '{found[0]}' has {found[1]} rows")
        broken = True
    layers = next((config[k] for k in _LAYER_KEYS if isinstance(config.get(k), int)), None)
    counted = count_layers(reader.tensors)
    if layers is not None and counted and layers != counted:
        problems.append(f"config.json says {layers} layers, but the tensors hold {counted}")
        broken = True
    dtype = config.get("dtype") or config.get("torch_dtype")
    floats = {str(i.dtype).replace("torch.", "") for i in reader.tensors.values() if i.dtype.is_floating_point}
    if isinstance(dtype, str) and floats and dtype not in floats:
        problems.append(f"config.json says dtype {dtype}, but the tensors are {', '.join(sorted(floats))}")
    if problems:
        return SmokeCheck("config", "broken" if broken else "suspicious", "; ".join(problems) + ".")
    return SmokeCheck("config", "ok", f"Vocabulary size, {counted} layers and dtype agree with the tensors.")


def check_finite(reader: ModelReader, cancel=None) -> SmokeCheck:
    """No NaN or Inf in any floating tensor; tensors are read and checked one at a time."""
    bad = []
    for name, info in reader.tensors.items():
        if cancel is not None:
            cancel.raise_if_cancelled()
        if not info.dtype.is_floating_point:
            continue
        tensor = reader.get(name)
        try:
            finite = bool(torch.isfinite(tensor).all())
        except (RuntimeError, NotImplementedError):  # float8 and other dtypes without isfinite
            finite = bool(torch.isfinite(tensor.float()).all())
        if not finite:
            bad.append(name)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        return SmokeCheck("finite", "broken", f"NaN or Inf values in {', '.join(bad[:3])}{more}.")
    return SmokeCheck("finite", "ok", f"All {len(reader.tensors)} tensors are finite.")
