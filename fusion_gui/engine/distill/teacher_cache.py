"""The offline teacher's cache: the teacher's top-k log-probabilities per position, read back by training.

A cache folder holds `teacher_cache.json` (what was captured, from what) and safetensors shards with,
per block of tokens: `input_ids` [n, L], `top_ids` [n, L-1, k] int32, `top_log_probs` [n, L-1, k] float32
and `rest_mass` [n, L-1] float32 (the teacher's probability outside its top k). Training finds each
batch's rows by the blocks' tokens, so any split, shuffle or student can use one cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from fusion_gui.engine.errors import InputError

INFO_FILE = "teacher_cache.json"
_DIFFERENCES = {"teacher": "another teacher", "data": "other data", "tokenizer": "another student tokenizer",
                "settings": "other settings (seq_length or temperature)"}
FORMAT_VERSION = 1
_TEACHER_CONTENT = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def teacher_hash(path: str) -> str:
    """The teacher's config and tokenizer by content, its weight files by name, size and modification
    time (as the Fisher cache keys them: re-reading many gigabytes at each start would cost minutes)."""
    folder, digest = Path(path), hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if file.name in _TEACHER_CONTENT:
            digest.update(f"{file.name}|{_sha256_file(file)}\n".encode())
        elif file.suffix in (".safetensors", ".bin", ".json", ".pt"):
            stat = file.stat()
            digest.update(f"{file.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _data_hash(path: str) -> str:
    p = Path(path)
    if p.is_file():
        return _sha256_file(p)
    digest = hashlib.sha256()
    for file in sorted(f for f in p.rglob("*") if f.is_file()):
        digest.update(f"{file.relative_to(p)}|{_sha256_file(file)}\n".encode())
    return digest.hexdigest()


def cache_parts(config, top_k: int) -> dict[str, str]:
    """What a cache depends on, each part hashed on its own so a mismatch can be named."""
    data = {k: v for k, v in asdict(config.data).items() if k != "eval_fraction"}  # the cache holds every block
    return {"teacher": teacher_hash(config.teacher),
            "data": _data_hash(config.data.path) + json.dumps(data, sort_keys=True, default=str),
            "tokenizer": _tokenizer_hash(config.student),
            "settings": json.dumps({"seq_length": config.training.seq_length, "top_k": top_k,
                                    "temperature": config.temperature, "format": FORMAT_VERSION})}


def _tokenizer_hash(student: str) -> str:
    """The blocks are the student's tokens: its tokenizer files are part of the key."""
    digest = hashlib.sha256()
    for name in _TEACHER_CONTENT[2:]:
        file = Path(student) / name
        if file.is_file():
            digest.update(f"{name}|{_sha256_file(file)}\n".encode())
    return digest.hexdigest()


def cache_key(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def row_bytes(seq_length: int, top_k: int) -> int:
    """Bytes one block takes in the cache."""
    positions = seq_length - 1
    return seq_length * 4 + positions * top_k * 8 + positions * 4


def read_info(cache_dir: Path) -> dict | None:
    try:
        info = json.loads((Path(cache_dir) / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def check_cache(cache_dir: str | Path, config) -> dict:
    """The cache's info when it was captured for this config's teacher, data, tokenizer and settings;
    otherwise one sentence naming what differs."""
    cache_dir = Path(cache_dir)
    info = read_info(cache_dir)
    if info is None:
        raise InputError(f"'{cache_dir}' is not a teacher cache (no readable {INFO_FILE}); "
                         f"write one with `fusion-gui capture-teacher`.")
    parts = cache_parts(config, int(info.get("top_k", 0)))
    differs = [name for name, value in parts.items() if info.get("parts", {}).get(name) != value]
    if differs:
        what = " and ".join(_DIFFERENCES[name] for name in differs)
        raise InputError(f"The teacher cache '{cache_dir}' was captured with {what} than this config's; capture "
                         f"it again for this config (`fusion-gui capture-teacher`).")
    return info


class TeacherCache:
    """Reads a cache's rows by the tokens of a block; the teacher itself is never loaded."""

    def __init__(self, cache_dir: str | Path, config):
        from safetensors import safe_open

        self.dir = Path(cache_dir)
        self.info = check_cache(self.dir, config)
        self.top_k = int(self.info["top_k"])
        self.handles, self.rows = [], {}
        for shard_no, name in enumerate(self.info["shards"]):
            handle = safe_open(str(self.dir / name), framework="pt")
            self.handles.append(handle)
            for row, ids in enumerate(handle.get_tensor("input_ids")):
                self.rows[ids.to(torch.int64).numpy().tobytes()] = (shard_no, row)

    def lookup(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(top_ids [B, L-1, k], top_log_probs [B, L-1, k], rest_mass [B, L-1]) for a batch of blocks."""
        found = []
        for ids in input_ids.detach().cpu().to(torch.int64):
            where = self.rows.get(ids.numpy().tobytes())
            if where is None:
                raise InputError(f"A training block is missing from the teacher cache '{self.dir}': it was "
                                 f"captured from other data or another tokenizer; capture it again.")
            found.append(where)
        out = []
        for name in ("top_ids", "top_log_probs", "rest_mass"):
            out.append(torch.stack([self.handles[s].get_slice(name)[r] for s, r in found]).to(input_ids.device))
        return out[0], out[1], out[2]
