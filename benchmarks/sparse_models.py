"""Checkpoints far bigger than the disk, for planning and GUI benchmarks: real safetensors headers over
sparse (hole) data.

Each shard is a real safetensors file: an 8-byte header length, the JSON header with every tensor's dtype,
shape and offsets, then the data region, which is never written (the file is extended with truncate, so
the filesystem stores a hole). A 70B-shaped model is ~138 GB on paper and a few KB on disk. Headers,
the index, config.json and a small tokenizer are all a planner or a models table reads; reading a tensor
gives zeros.

    python benchmarks/sparse_models.py OUT_DIR [--preset llama-70b]
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

PRESETS = {
    # Llama-3-70B's shapes (bf16): 80 layers, hidden 8192, MLP 28672, 8 KV heads, 128256 tokens.
    "llama-70b": dict(layers=80, hidden=8192, inter=28672, heads=64, kv_heads=8, vocab=128256),
    "llama-8b": dict(layers=32, hidden=4096, inter=14336, heads=32, kv_heads=8, vocab=128256),
}
BYTES_PER = {"BF16": 2, "F16": 2, "F32": 4}


def llama_tensors(layers: int, hidden: int, inter: int, heads: int, kv_heads: int, vocab: int
                  ) -> dict[str, tuple[int, ...]]:
    kv = hidden // heads * kv_heads
    names: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        names.update({
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (kv, hidden),
            p + "self_attn.v_proj.weight": (kv, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
        })
    names.update({"model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)})
    return names


def write_sparse_shard(path: Path, tensors: dict[str, tuple[int, ...]], dtype: str = "BF16") -> int:
    """One safetensors file whose data region is a hole; returns its size on paper."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors.items():
        size = BYTES_PER[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        f.truncate(8 + len(blob) + offset)
    return 8 + len(blob) + offset


def write_sparse_model(folder: Path, preset: str = "llama-70b", shard_bytes: int = 5_000_000_000,
                       tokenizer_words: list[str] | None = None) -> Path:
    """A Hugging Face folder (config.json, sharded safetensors with index, optional tokenizer)."""
    shape = PRESETS[preset]
    folder.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": shape["hidden"],
              "intermediate_size": shape["inter"], "num_hidden_layers": shape["layers"],
              "num_attention_heads": shape["heads"], "num_key_value_heads": shape["kv_heads"],
              "vocab_size": shape["vocab"], "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tensors = llama_tensors(**shape)
    shards: list[dict[str, tuple[int, ...]]] = [{}]
    size = 0
    for name, dims in tensors.items():
        nbytes = 2
        for dim in dims:
            nbytes *= dim
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = dims
        size += nbytes
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        total += write_sparse_shard(folder / fname, shard)
        weight_map.update({name: fname for name in shard})
    index = {"metadata": {"total_size": sum(_nbytes(d) for d in tensors.values())}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    if tokenizer_words is not None:
        _write_tokenizer(folder, tokenizer_words)
    return folder


def _nbytes(dims: tuple[int, ...]) -> int:
    n = 2
    for dim in dims:
        n *= dim
    return n


def _write_tokenizer(folder: Path, words: list[str]) -> None:
    """A small word-level tokenizer (its vocabulary is smaller than the embedding: a padded vocabulary)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--preset", default="llama-70b", choices=sorted(PRESETS))
    args = ap.parse_args()
    folder = write_sparse_model(Path(args.out_dir), args.preset, tokenizer_words=["alpha", "beta"])
    on_paper = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    on_disk = sum(f.stat().st_blocks * 512 for f in folder.glob("*.safetensors"))
    print(f"{folder}: {on_paper / 1e9:.1f} GB on paper, {on_disk / 1e3:.0f} KB on disk")


if __name__ == "__main__":
    main()
