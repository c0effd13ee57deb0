"""What a tensor name says: which layer it belongs to, its role (kind), and where it sits
outside the layers. Every part of the app reads names through here, so the models table, the plan,
the metrics and the tokenizer merge count layers the same way.

Works from names alone, so any architecture is covered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# A layer index is the number right after a layer container: layers.N (Llama), h.N (GPT-2),
# layer.N (BERT, ViT), blocks.N / block.N / transformer_blocks.N (diffusion, ViT variants).
# Other numbers (experts.3, mm_projector.2, a Sequential's index) are not layers.
_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block|transformer_blocks|resblocks|"
                    r"decoder_layers|encoder_layers|down_blocks|up_blocks)\.(\d+)(?=\.|$)")

_EMBEDDING_KEYS = ("embed", "wte", "wpe", "word_embeddings", "position_embeddings", "token_type")
# Tensors outside the layers that come before them in a model's forward (the rest come after).
_BEFORE_LAYERS_KEYS = _EMBEDDING_KEYS + ("patch_embed", "conv_in", "time_embed", "cls_token")
_HEAD_KEYS = ("lm_head", "output.weight", "cls.predictions")

_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("embed", _EMBEDDING_KEYS),
    ("lm_head", _HEAD_KEYS),
    ("norm", ("norm", "ln_", ".ln", "layernorm", "layer_norm")),
    ("attn.q", ("q_proj", "query", ".wq", "to_q")),
    ("attn.k", ("k_proj", ".key", ".wk", "to_k")),
    ("attn.v", ("v_proj", ".value", ".wv", "to_v")),
    ("attn.qkv", ("qkv", "c_attn", "query_key_value", "Wqkv")),
    ("attn.o", ("o_proj", "attn.c_proj", "attention.output.dense", "out_proj", ".wo", "to_out")),
    ("mlp.gate", ("gate_proj", "w1", "gate")),
    ("mlp.up", ("up_proj", "c_fc", "fc1", "intermediate.dense", "w3", "dense_h_to_4h")),
    ("mlp.down", ("down_proj", "mlp.c_proj", "fc2", "output.dense", "w2", "dense_4h_to_h")),
)
# Display order of the kinds (the heatmap's rows)
KINDS = ("embed", "attn.q", "attn.k", "attn.v", "attn.qkv", "attn.o", "mlp.gate", "mlp.up", "mlp.down",
         "norm", "lm_head", "other")


def layer_of(name: str) -> int | None:
    """The layer index in a tensor name, or None for a tensor outside the layers."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def layer_template(name: str) -> tuple[int | None, str]:
    """(layer index, name with that index replaced by '{}'), e.g. (3, 'model.layers.{}.mlp')."""
    match = _LAYER.search(name)
    if not match:
        return None, name
    start, end = match.span(1)
    return int(match.group(1)), name[:start] + "{}" + name[end:]


def count_layers(names: Iterable[str]) -> int:
    """How many layers these tensor names span (highest index + 1; 0 when none is in a layer)."""
    return max((layer for name in names if (layer := layer_of(name)) is not None), default=-1) + 1


def tensor_kind(name: str) -> str:
    """A coarse role (one of KINDS), e.g. 'attn.q' or 'mlp.down'."""
    lowered = name.lower()
    if "attention.output.dense" in lowered or "attention.output.layernorm" in lowered:
        return "norm" if "layernorm" in lowered else "attn.o"
    for kind, keys in _KINDS:
        if any(k.lower() in lowered for k in keys):
            return kind
    return "other"


def comes_before_layers(name: str) -> bool:
    """A tensor outside the layers that the forward uses before them (embeddings, patch or time
    embeddings); the other tensors outside the layers (final norm, head) come after."""
    return layer_of(name) is None and any(k in name for k in _BEFORE_LAYERS_KEYS)


def is_embedding_or_head(name: str) -> bool:
    """A token or position embedding or an output head (indexed by token, not a Linear inside a layer)."""
    return any(k in name for k in _EMBEDDING_KEYS + ("lm_head",))


def module_of(name: str) -> str:
    """The module a parameter belongs to: 'model.layers.0.mlp.up_proj.weight' -> '...up_proj'."""
    return name.rsplit(".", 1)[0] if "." in name else name
