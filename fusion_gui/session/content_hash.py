"""Content hashes of models, for the history and its score cache.

Honest and cheap: a file's hash is the full sha256 of its bytes (never a sample), computed once
and cached by (path, size, mtime) in the history. Files in a Hugging Face cache need no reading at
all: their blob's file name already is the sha256 of their content. A model's hash covers every
file that can change a score (weights, config, tokenizer, chat template), not its README or recipe.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

_SHA256 = re.compile(r"[0-9a-f]{64}")
_IGNORED = {"README.md", "mergekit_config.yml", "distill_config.yml"}


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes; a file in a Hub cache is named by it already (blobs/<sha256>)."""
    real = Path(path).resolve()
    if real.parent.name == "blobs" and _SHA256.fullmatch(real.name):
        return real.name
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def model_hash(path: Path, hash_file: Callable[[Path], str] = file_sha256) -> str:
    """One hash for a model folder (or weights file): sha256 over its files' names and hashes."""
    path = Path(path)
    if path.is_file():
        return hash_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in _IGNORED
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path).as_posix()}\0{hash_file(file)}\n".encode())
    return digest.hexdigest()
