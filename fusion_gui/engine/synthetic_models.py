"""Synthetic checkpoints built on the fly, for `fusion-gui --selftest` and the headless demo (the
tests use them too): tiny seeded transformers models and a character tokenizer.

Nothing is downloaded: models come from transformers `from_config` with a fixed seed, and
"fine-tunes" are the base plus a seeded perturbation, so every run builds the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_config(arch: str = "llama", layers: int = 4, hidden: int = 64, vocab: int = 256):
    import transformers

    if arch == "llama":
        return transformers.LlamaConfig(
            vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2,
            num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=128, tie_word_embeddings=False,
        )
    if arch == "gpt2":
        return transformers.GPT2Config(
            vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, n_positions=128,
            bos_token_id=1, eos_token_id=2,
        )
    raise ValueError(f"unknown tiny architecture {arch!r}")


def build_model(config, seed: int, dtype: torch.dtype = torch.float32):
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    return model.to(dtype).eval()


def perturb(model, seed: int, scale: float = 0.02):
    """A stand-in fine-tune: every floating weight moves by seeded noise of relative size `scale`."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
            param.add_((noise * scale * (param.float().std() + 1e-3)).to(param.dtype))
    return model


def save_model(model, path: Path, max_shard_size: str | int = "200KB", tokenizer: bool = True) -> Path:
    path = Path(path)
    model.save_pretrained(path, max_shard_size=max_shard_size)
    if tokenizer:
        write_tiny_tokenizer(path, model.config.vocab_size)
    return path


def write_tiny_tokenizer(path: Path, vocab: int) -> None:
    """A byte-level word-piece tokenizer over `vocab` ids, saved the way transformers saves one."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"] + [chr(c) for c in range(32, 127)]
    words += [f"tok{i}" for i in range(vocab - len(words))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words[:vocab])}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.save_pretrained(path)


def build_family(root: Path, arch: str = "llama", n_finetunes: int = 2, layers: int = 4,
                 hidden: int = 64, dtype: torch.dtype = torch.float32,
                 max_shard_size: str | int = "200KB") -> list[Path]:
    """A base model and `n_finetunes` perturbed copies saved under root: [base, ft1, ft2, ...]."""
    root = Path(root)
    config = tiny_config(arch, layers=layers, hidden=hidden)
    paths = [save_model(build_model(config, seed=0, dtype=dtype), root / f"{arch}-base", max_shard_size)]
    for i in range(1, n_finetunes + 1):
        model = perturb(build_model(config, seed=0, dtype=dtype), seed=100 + i)
        paths.append(save_model(model, root / f"{arch}-ft{i}", max_shard_size))
    return paths
