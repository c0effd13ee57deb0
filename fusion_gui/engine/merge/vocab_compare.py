"""How several models' vocabularies differ (the tokenizer panel's table): sizes, the union, the
tokens only some models have."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.merge.model_tokenizer import config_vocab, load_tokenizer, usable_vocab


@dataclass(frozen=True)
class VocabInfo:
    label: str  # the model's label (ModelReader.label)
    tokenizer_size: int  # len(tokenizer), added tokens included
    embedding_rows: int | None  # config vocab_size (rows of the embedding); > tokenizer_size when padded
    only_here: int  # tokens of this model that at least one other model lacks


@dataclass(frozen=True)
class VocabComparison:
    models: tuple[VocabInfo, ...]
    union_size: int  # size of the union vocabulary
    common_size: int  # tokens every model has
    partial_tokens: tuple[tuple[str, tuple[bool, ...]], ...]  # tokens not in every model, per-model presence


def union_order(vocabs: Sequence[dict[str, int]]) -> list[str]:
    """Every token, the first model's in id order, then each next model's new ones in id order."""
    seen: dict[str, None] = {}
    for vocab in vocabs:
        for tok in sorted(vocab, key=vocab.__getitem__):
            seen.setdefault(tok)
    return list(seen)


def compare_vocabularies(refs: Sequence[str]) -> VocabComparison:
    """How the models' vocabularies differ; a token beyond a model's embedding rows counts as absent."""
    infos, vocabs = [], []
    for ref in refs:
        reader = open_model(ref)
        try:
            tokenizer = load_tokenizer(reader)
            rows = config_vocab(reader)
            vocab = usable_vocab(tokenizer, rows[1] if rows else len(tokenizer.get_vocab()))
            infos.append((reader.label, len(tokenizer), rows[1] if rows else None))
            vocabs.append(vocab)
        finally:
            reader.close()
    union = union_order(vocabs)
    partial = []
    for tok in union:
        presence = tuple(tok in v for v in vocabs)
        if not all(presence):
            partial.append((tok, presence))
    models = tuple(VocabInfo(label, size, rows, sum(1 for tok, p in partial if p[k]))
                   for k, (label, size, rows) in enumerate(infos))
    return VocabComparison(models, len(union), len(union) - len(partial), tuple(partial))
