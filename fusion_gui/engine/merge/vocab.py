"""Tokenizer merging, as mergekit 0.1.5 does it: build the output tokenizer (`base`, `union` or a
named model's), map every model's token ids onto it, and permute each model's vocabulary tensors
into the output vocabulary before the merge method runs, so the method sees equal shapes.

Which tensors are vocabulary tensors is read from shapes, not from architecture tables: a
floating tensor outside the numbered layers whose size along axis 0 equals the model's
vocabulary rows (config `vocab_size`, `n_vocab` or `padded_vocab_size`; the tokenizer's length for
a model without a config). A 1-D tensor only counts when the hidden size differs from the
vocabulary size, so a final norm is never taken for a bias over the vocabulary.

Rows a model's tokenizer does not reach (a padded embedding) are ignored; a token the tokenizer
places at or beyond the config's vocabulary size counts as missing from that model. Reading one
model's tokenizer is model_tokenizer.py; comparing vocabularies for the GUI is vocab_compare.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.merge.model_tokenizer import hidden_size, load_tokenizer, tokenizer_folder, vocab_rows
from fusion_gui.engine.naming import layer_of

# --- building the output vocabulary ------------------------------------------------------------

def _strip_tokenizer(tokenizer, rows: int, label: str):
    """The tokenizer without tokens at or beyond `rows` (mergekit's get_stripped_tokenizer)."""
    import tokenizers

    if all(i < rows for i in tokenizer.get_vocab().values()):
        return tokenizer
    if not tokenizer.is_fast:
        raise InputError(f"The tokenizer of '{label}' has tokens beyond the model's {rows} embedding rows "
                         f"and no fast version to remove them from.")
    data = json.loads(tokenizer._tokenizer.to_str())
    model = data["model"]
    unused = {tok for tok, i in tokenizer.get_vocab().items() if i >= rows}
    data["added_tokens"] = [e for e in data.get("added_tokens", []) if e["id"] < rows]
    if isinstance(model.get("vocab"), dict):  # BPE, WordLevel, WordPiece
        model["vocab"] = {tok: i for tok, i in model["vocab"].items() if i < rows}
    elif isinstance(model.get("vocab"), list):  # Unigram: the id is the position
        model["vocab"] = model["vocab"][:rows]
    else:
        raise InputError(f"The tokenizer of '{label}' has tokens beyond the model's {rows} embedding rows, "
                         f"and its {model.get('type')} model cannot have them removed.")
    if model.get("type") == "BPE":
        def keep(merge) -> bool:
            parts = merge.split(" ") if isinstance(merge, str) else merge
            return not any(p in unused for p in parts)

        model["merges"] = [m for m in model.get("merges", []) if keep(m)]
    tokenizer._tokenizer = tokenizers.Tokenizer.from_str(json.dumps(data))
    return tokenizer


def _copy_tokenizer(tokenizer):
    """A separate copy, through save and load, as mergekit makes one."""
    from transformers import AutoTokenizer

    folder = tempfile.mkdtemp(prefix="fusion-tokenizer-")
    try:
        tokenizer.save_pretrained(folder)
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _union_tokenizer(base_tokenizer, tokenizers: dict[str, Any], rows: dict[str, int],
                     vocabs: dict[str, dict[str, int]]):
    """mergekit's build_union_tokenizer: the base's tokens, then every other model's plain tokens
    it lacks (as added tokens), then every model's added tokens it lacks, with their settings.
    `vocabs` holds each tokenizer's get_vocab(), read once: for 128k tokens it holds the GIL ~0.1 s."""
    plain: dict[str, None] = {}
    added: dict[str, Any] = {}
    for ref, tokenizer in tokenizers.items():
        vocab = vocabs[ref]
        for tok in sorted(vocab, key=vocab.__getitem__):  # id order, so the result is deterministic
            if vocab[tok] < rows[ref]:
                plain.setdefault(tok)
        for i, info in sorted(tokenizer.added_tokens_decoder.items()):
            if i < rows[ref]:
                added.setdefault(info.content, info)  # the first model's settings win, as in mergekit
    out = _copy_tokenizer(base_tokenizer)
    base_vocab = vocabs[next(iter(tokenizers))]  # the base comes first
    # one call each: the tokenizers library rebuilds its added-token matcher on every call (holding
    # the GIL), so adding 4,000 tokens one by one took minutes; a list gets the same ids in the same order
    out.add_tokens([tok for tok in plain if tok not in added and tok not in base_vocab])
    out.add_tokens(list(added.values()))
    return out


@dataclass
class _Fill:
    """How one tensor's models (in task order) fill the output vocabulary."""
    keep_out: list[torch.Tensor]  # per model: output ids that take the model's own row
    keep_src: list[torch.Tensor]  # ... and those rows
    default_ids: torch.Tensor  # output ids whose row, where a model does not keep its own, is shared
    default_for: list[torch.Tensor]  # per model: positions in default_ids it takes the shared row at
    average: list[tuple[torch.Tensor, torch.Tensor]]  # per model: (positions, rows) summed into the average
    average_count: tuple[torch.Tensor, torch.Tensor]  # (positions, number of models summed there)
    donor: list[tuple[torch.Tensor, torch.Tensor]]  # per model: (positions, rows) copied as the shared row


def _long(values) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.long)


class Vocabulary:
    """The output tokenizer and, for every model, where each output token sits in that model."""

    def __init__(self, tokenizer, permutations: dict[str, torch.Tensor], model_rows: dict[str, int],
                 hidden: dict[str, int | None], original_vocabs: dict[str, dict[str, int]],
                 token_settings: dict[str, dict], pad_to_multiple_of: int | None,
                 labels: dict[str, str]):
        self.tokenizer = tokenizer
        self.vocab = tokenizer.get_vocab()
        self._tokens_by_id = {i: tok for tok, i in self.vocab.items()}
        self.size = max(len(self.vocab), max(self.vocab.values(), default=-1) + 1)
        multiple = pad_to_multiple_of or 1
        self.rows = -(-self.size // multiple) * multiple  # output embedding rows
        self.permutations, self.model_rows, self.hidden = permutations, model_rows, hidden
        self.original_vocabs, self.token_settings, self.labels = original_vocabs, token_settings, labels
        self._fills: dict[tuple[tuple[str, ...], str | None], _Fill] = {}

    def keeps_ids(self, ref: str) -> bool:
        """Whether every output token has the same id in this model, so text tokenized for the output
        is tokenized for this model too."""
        permutation = self.permutations[ref]
        return bool(torch.equal(permutation, torch.arange(len(permutation), dtype=permutation.dtype)))

    def is_vocab_tensor(self, ref: str, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> bool:
        """A floating tensor outside the layers with one row per token of this model (see the module doc)."""
        rows = self.model_rows.get(ref)
        if rows is None or not shape or shape[0] != rows or not dtype.is_floating_point:
            return False
        if layer_of(name) is not None:
            return False
        return len(shape) > 1 or self.hidden.get(ref) != rows

    def fill(self, models: Sequence[str], base: str | None) -> _Fill:
        """mergekit's fill rules for these models; InputError for a `tokens:` setting they cannot meet."""
        key = (tuple(models), base if base in models else None)
        if key not in self._fills:
            self._fills[key] = self._plan_fill(*key)
        return self._fills[key]

    def _plan_fill(self, models: tuple[str, ...], base: str | None) -> _Fill:
        perms = torch.stack([self.permutations[m] for m in models])  # (models, size)
        present = perms >= 0
        forced = torch.zeros(self.size, dtype=torch.bool)
        sourced = torch.zeros(self.size, dtype=torch.bool)  # tokens whose `tokens:` entry names a source
        for tok, setting in self.token_settings.items():
            forced[self.vocab[tok]] = bool(setting.get("force"))
            sourced[self.vocab[tok]] = setting.get("source") is not None
        needs_default = (~present.all(0)) | forced
        # mergekit's default rule, also for a forced token with no source: the one model that has
        # the token; none: zero; the base when it has it; else the mean over the models that have it
        ruled = (needs_default & ~sourced).nonzero().flatten()
        count = present[:, ruled].sum(0)
        donor_of = torch.full_like(ruled, -1)
        single = count == 1
        donor_of[single] = present[:, ruled[single]].long().argmax(0)
        if base is not None:
            k = models.index(base)
            donor_of[(count > 1) & present[k, ruled]] = k
        average_ids = ruled[(count > 1) & (donor_of < 0)]
        donors = [(ruled[donor_of == k], perms[k, ruled[donor_of == k]]) for k in range(len(models))]
        extra: list[list[tuple[int, int]]] = [[] for _ in models]  # (output id, row) from `tokens:` sources
        for out_id in (needs_default & sourced).nonzero().flatten().tolist():
            token = self._token_at(out_id)
            source = self.token_settings[token]["source"]
            if isinstance(source, dict) and source["kind"] == "zero":
                continue
            model = source["model"] if isinstance(source, dict) else source
            k = self._model_index(models, model, token)
            if isinstance(source, dict):
                row = self._model_token_row(model, source, token)
            else:
                row = int(perms[k, out_id])
                if row < 0:
                    raise InputError(f"Token {token!r} takes its embedding from '{self.labels[model]}', "
                                     f"which does not have that token.")
            extra[k].append((out_id, row))
        default_ids = needs_default.nonzero().flatten()
        position = torch.full((self.size,), -1, dtype=torch.long)
        position[default_ids] = torch.arange(len(default_ids))
        donor = []
        for (ids, rows), more in zip(donors, extra):
            ids = torch.cat([ids, _long(i for i, _ in more)])
            donor.append((position[ids], torch.cat([rows, _long(r for _, r in more)])))
        average = []
        for k in range(len(models)):
            ids = average_ids[present[k, average_ids]]
            average.append((position[ids], perms[k, ids]))
        keep = present & ~forced
        return _Fill(
            keep_out=[keep[k].nonzero().flatten() for k in range(len(models))],
            keep_src=[perms[k][keep[k]] for k in range(len(models))],
            default_ids=default_ids,
            default_for=[(~keep[k][default_ids]).nonzero().flatten() for k in range(len(models))],
            average=average,
            average_count=(position[average_ids], present[:, average_ids].sum(0)),
            donor=donor)

    def _token_at(self, out_id: int) -> str:
        return self._tokens_by_id.get(out_id, "")

    def _model_index(self, models: tuple[str, ...], model: str, token: str) -> int:
        if model not in models:
            label = self.labels.get(model, model)
            raise InputError(f"Token {token!r} takes its embedding from '{label}', which is not among the "
                             f"models merged into the vocabulary tensors.")
        return models.index(model)

    def _model_token_row(self, model: str, source: dict, token: str) -> int:
        row = source.get("token_id")
        if row is None:
            row = self.original_vocabs[model].get(source["token"])
            if row is None:
                raise InputError(f"Token {token!r} takes the embedding of {source['token']!r} from "
                                 f"'{self.labels[model]}', whose tokenizer has no such token.")
        if row >= self.model_rows[model]:
            raise InputError(f"Token {token!r} takes embedding row {row} from '{self.labels[model]}', "
                             f"which has only {self.model_rows[model]} rows.")
        return row

    def permute(self, tensors: list[torch.Tensor], models: Sequence[str], base: str | None) -> list[torch.Tensor]:
        """Each model's vocabulary tensor, re-indexed to the output vocabulary (mergekit's PermutedVocabulary)."""
        fill = self.fill(models, base)
        dtype = tensors[0].dtype
        for tensor in tensors[1:]:
            dtype = torch.promote_types(dtype, tensor.dtype)
        device, token_shape = tensors[0].device, tensors[0].shape[1:]

        def on(index: torch.Tensor) -> torch.Tensor:
            return index.to(device)

        shared = torch.zeros((len(fill.default_ids), *token_shape), dtype=dtype, device=device)
        for tensor, (positions, rows) in zip(tensors, fill.average):
            shared[on(positions)] += tensor[on(rows)].to(dtype)
        positions, counts = fill.average_count
        if len(positions):
            scale = on(counts).to(dtype).reshape(-1, *([1] * len(token_shape)))
            shared[on(positions)] /= scale
        for tensor, (positions, rows) in zip(tensors, fill.donor):
            shared[on(positions)] = tensor[on(rows)].to(dtype)
        out = []
        for k, tensor in enumerate(tensors):
            new = torch.zeros((self.rows, *token_shape), dtype=dtype, device=device)
            new[on(fill.keep_out[k])] = tensor[on(fill.keep_src[k])].to(dtype)
            take = on(fill.default_for[k])
            new[on(fill.default_ids)[take]] = shared[take]
            if self.rows > self.size:  # padding rows: the mean of the real ones
                new[self.size:] = new[:self.size].mean(0)
            out.append(new)
        return out


def tokenizer_settings(recipe) -> tuple[str | None, dict[str, dict], int | None]:
    """(source, tokens, pad_to_multiple_of) from `tokenizer_source` or the `tokenizer:` block."""
    if recipe.tokenizer is not None:
        block = recipe.tokenizer
        return block.get("source", "union"), block.get("tokens") or {}, block.get("pad_to_multiple_of")
    return recipe.tokenizer_source, {}, None


_PREVIEWS: dict[tuple, Vocabulary] = {}  # the newest pre-flight's vocabulary, by what it was built from
_PREVIEWS_LOCK = threading.Lock()


def _fingerprint(recipe, readers: dict[str, ModelReader]) -> tuple:
    """What a vocabulary depends on: the tokenizer settings, the models in order, and the name, size
    and time of every file in their folders (tokenizer files, config.json)."""
    folders = []
    for ref in [recipe.base_model, *recipe.referenced_models(), recipe.tokenizer_source]:
        reader = readers.get(ref) if ref is not None else None
        for folder in {reader.path, tokenizer_folder(reader)} if reader is not None else ():
            if folder is not None and folder.is_dir():
                folders.append((ref, str(folder), tuple(sorted(
                    (e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder) if e.is_file()))))
    return repr(tokenizer_settings(recipe)), recipe.base_model, tuple(recipe.referenced_models()), tuple(folders)


def plan_vocabulary(recipe, readers: dict[str, ModelReader], preview: bool = False) -> Vocabulary | None:
    """The output vocabulary the recipe asks for, or None to keep the base's tokenizer files as they are.

    `readers` holds every referenced model, and the tokenizer source model when it is another one.
    preview: a pre-flight that only describes the output reuses the previous pre-flight's vocabulary
    when nothing it depends on changed (a parameter edit must not reload every tokenizer); a merge
    always builds its own, since it writes the tokenizer.
    """
    source, tokens, pad = tokenizer_settings(recipe)
    if source is None:
        return None
    key = _fingerprint(recipe, readers) if preview else None
    with _PREVIEWS_LOCK:
        if key is not None and key in _PREVIEWS:
            return _PREVIEWS[key]
    vocabulary = _build_vocabulary(recipe, readers, source, tokens, pad)
    if key is not None:
        with _PREVIEWS_LOCK:
            _PREVIEWS.clear()
            _PREVIEWS[key] = vocabulary
    return vocabulary


def _build_vocabulary(recipe, readers: dict[str, ModelReader], source: str, tokens: dict, pad) -> Vocabulary:
    refs = recipe.referenced_models()
    base = recipe.base_model or refs[0]
    labels = {ref: reader.label for ref, reader in readers.items()}
    tokenizers, rows = {}, {}
    for ref in [base] + [r for r in refs if r != base]:
        tokenizers[ref] = load_tokenizer(readers[ref])
        rows[ref] = vocab_rows(readers[ref], tokenizers[ref])
    tokenizers[base] = _strip_tokenizer(tokenizers[base], rows[base], labels[base])
    vocabs = {ref: tokenizer.get_vocab() for ref, tokenizer in tokenizers.items()}
    if source == "base":
        out = _copy_tokenizer(tokenizers[base])
    elif source == "union":
        out = _union_tokenizer(tokenizers[base], tokenizers, rows, vocabs)
    else:
        out = load_tokenizer(readers[source])
    existing = set(out.get_vocab())
    for tok in tokens:
        if tok not in existing:
            out.add_tokens(tok)
            existing.add(tok)
    out_vocab = out.get_vocab()
    size = max(len(out_vocab), max(out_vocab.values(), default=-1) + 1)
    permutations = {}
    for ref in refs:
        model_vocab = vocabs[ref]
        p = [-1] * size  # a list, then one tensor: setting 128k tensor elements one by one took seconds
        for tok, out_id in out_vocab.items():
            model_id = model_vocab.get(tok, -1)
            if model_id < rows[ref]:  # a token beyond the embedding rows is padding: missing
                p[out_id] = model_id
        permutations[ref] = torch.tensor(p, dtype=torch.long)
    return Vocabulary(out, permutations, rows, {ref: hidden_size(readers[ref]) for ref in refs},
                      vocabs, tokens, pad, labels)
