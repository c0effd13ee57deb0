"""The "capture teacher" job: run the teacher once over every block of the training data and keep its
top-k log-probabilities, so training can read them back with no teacher in memory.

    result = yield from capture_teacher(config, "teacher-cache", top_k=64, cancel=token)

The cache appears at CACHE_DIR only when complete (written into a hidden folder beside it, renamed at
the end); a cancelled job or a full disk leaves nothing that looks like a cache.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Generator
from pathlib import Path

import torch

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.distill.data import check_tokenizers, load_blocks
from fusion_gui.engine.distill.sparse_kl import teacher_top_k
from fusion_gui.engine.distill.teacher_cache import (FORMAT_VERSION, INFO_FILE, cache_key, cache_parts, read_info,
                                                     row_bytes)
from fusion_gui.engine.distill.teacher_events import CaptureResult
from fusion_gui.engine.distill.teacher_setup import cross_tokenizers
from fusion_gui.engine.errors import InputError, OutputError
from fusion_gui.engine.io.partial import claim, publish, sweep_partials, temp_dir_for
from fusion_gui.engine.io.writer import disk_error, format_size
from fusion_gui.events import Event, Log, Progress

SHARD_BYTES = 1_000_000_000


def all_blocks(config, tokenizer) -> torch.Tensor:
    """Every block of the training data, training and held-out alike, as [n, seq_length] token ids."""
    o = config.training
    train, held_out = load_blocks(config.data.path, config.data.text_field, tokenizer, o.seq_length,
                                  config.data.eval_fraction, o.seed)
    return torch.stack([ds[i]["input_ids"] for ds in (train, held_out) for i in range(len(ds))])


def capture_bytes(n_blocks: int, seq_length: int, top_k: int) -> int:
    """The cache's size on disk, for the pre-flight (safetensors headers are a few kilobytes more)."""
    return n_blocks * row_bytes(seq_length, top_k)


def capture_teacher(config, cache_dir: str | Path, top_k: int, cancel: CancelToken | None = None,
                    force: bool = False, shard_bytes: int = SHARD_BYTES) -> Generator[Event, None, CaptureResult]:
    """Write the teacher's top-k log-probabilities over config's data into CACHE_DIR.
    Yields Log and Progress (blocks done of all blocks)."""
    cache_dir, started = Path(cache_dir), time.monotonic()
    if top_k < 1:
        raise InputError(f"top_k = {top_k}: keep at least 1 token per position.")
    if cross_tokenizers(config) is not None:
        raise InputError(f"The teacher '{config.teacher}' uses another vocabulary than the student '{config.student}'; "
                         f"a teacher cache holds log-probabilities of the student's tokens, so train with the live "
                         f"teacher instead (its vocabulary is aligned by characters).")
    tokenizer, vocab = check_tokenizers(config.teacher, config.student)
    top_k = min(top_k, vocab)
    parts = cache_parts(config, top_k)
    key = cache_key(parts)
    existing = read_info(cache_dir)
    if existing is not None and existing.get("key") == key:
        yield Log(f"The teacher cache '{cache_dir}' already holds this teacher on this data; reusing it.")
        return CaptureResult(str(cache_dir), int(existing["blocks"]), top_k, 0, time.monotonic() - started, True)
    if cache_dir.exists() and not force:
        what = "a teacher cache of another teacher, data or settings" if existing else "other files"
        raise InputError(f"'{cache_dir}' already holds {what}; choose another folder or replace it (--force).")
    blocks = all_blocks(config, tokenizer)
    n, length = blocks.shape
    needed = capture_bytes(n, length, top_k)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache_dir.parent).free
    if needed > free:
        raise OutputError(f"Not enough disk space in {cache_dir.parent}: the teacher cache needs "
                          f"{format_size(needed)} ({n} blocks, top {top_k}), {format_size(free)} free.")
    yield Log(f"Capturing the teacher '{config.teacher}' over {n} blocks of {length} tokens, top {top_k}: "
              f"{format_size(needed)} on disk.")
    yield from sweep_partials(cache_dir.parent)
    temp = claim(temp_dir_for(cache_dir), "teacher capture")
    try:
        shards = yield from _write_shards(config, blocks, top_k, vocab, temp, needed, shard_bytes, cancel, started)
        info = {"key": key, "parts": parts, "top_k": top_k, "blocks": n, "seq_length": length,
                "temperature": config.temperature, "teacher": config.teacher, "data": config.data.path,
                "shards": shards, "format": FORMAT_VERSION}
        (temp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        publish(temp, cache_dir, force)
    except Exception as err:  # safetensors reports a full disk as its own error type
        raise disk_error(cache_dir.parent, err, needed, what="the teacher cache") or err
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return CaptureResult(str(cache_dir), n, top_k, needed, time.monotonic() - started)


def _write_shards(config, blocks, top_k, vocab, temp, needed, shard_bytes, cancel, started):
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    o = config.training
    device = torch.device("cuda" if o.device != "cpu" and torch.cuda.is_available() else "cpu")
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(o.precision) if device.type == "cuda" else None
    teacher = AutoModelForCausalLM.from_pretrained(config.teacher, dtype=half or torch.float32).to(device).eval()
    n, length = blocks.shape
    per_shard = max(1, shard_bytes // row_bytes(length, top_k))
    shards, done = [], 0
    count = (n + per_shard - 1) // per_shard
    for first in range(0, n, per_shard):
        rows = blocks[first:first + per_shard]
        ids, values, rest = [], [], []
        for start in range(0, len(rows), o.batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled()
            batch = rows[start:start + o.batch_size].to(device)
            with torch.no_grad():
                logits = teacher(input_ids=batch).logits[:, :-1, :vocab]
            top = teacher_top_k(logits, top_k, config.temperature)
            for kept, part in zip((ids, values, rest), top):
                kept.append(part.cpu())
            done += len(batch)
            yield Progress(done, n, done * needed // n, needed, time.monotonic() - started, "teacher")
        name = f"teacher-{len(shards) + 1:05d}-of-{count:05d}.safetensors"
        save_file({"input_ids": rows.to(torch.int32).contiguous(), "top_ids": torch.cat(ids).contiguous(),
                   "top_log_probs": torch.cat(values).contiguous(), "rest_mass": torch.cat(rest).contiguous()},
                  str(temp / name), metadata={"format": str(FORMAT_VERSION)})
        shards.append(name)
    return shards
