"""Fisher-weighted merging's prepare step (methods/base.py, Preparation): settings, calibration
blocks, the cache of estimated Fishers, the plan-time check and the estimation a merge runs first.

Fisher-weighted averaging (Matena & Raffel, https://arxiv.org/abs/2111.09832) weighs every
element of every input by that model's diagonal Fisher; fisher_stream.py estimates it one decoder
layer at a time, so memory stays near one layer whatever the model size.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.methods.base import PrepareEstimate
from fusion_gui.engine.methods.fisher_skeleton import model_config, parameter_plan
from fusion_gui.engine.methods.fisher_stream import stream_fisher
from fusion_gui.engine.io.partial import claim, release, sweep_partials
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.io.writer import ShardedWriter, format_size
from fusion_gui.engine.merge import model_tokenizer
from fusion_gui.engine.merge.model_tokenizer import tokenizer_folder
from fusion_gui.engine.naming import layer_of
from fusion_gui.events import Event, Log, StepProgress

FORMAT_VERSION = 1  # bump when the estimate changes, so old cached Fishers are not reused
_INFO = "fisher.json"


# --- calibration data and settings -------------------------------------------------------------

@dataclass(frozen=True)
class FisherSettings:
    calibration: str  # absolute path of the calibration text
    samples: int  # blocks asked for
    seq_length: int  # tokens per block


def settings_from_tasks(tasks) -> FisherSettings:
    """The estimation settings, which must be one value for the whole merge."""
    values: dict[str, set] = {"calibration": set(), "samples": set(), "seq_length": set()}
    for task in tasks:
        if task.floating:
            for name, seen in values.items():
                seen.add(task.params[name])
    for name, seen in values.items():
        if len(seen) > 1:
            raise InputError(f"The fisher method needs one value of '{name}' for the whole merge, "
                             f"not one per layer or tensor.")
    calibration, samples, seq_length = (next(iter(values[n])) for n in ("calibration", "samples", "seq_length"))
    if samples < 1 or seq_length < 2:
        raise InputError(f"The fisher method needs samples >= 1 and seq_length >= 2, got samples={samples}, "
                         f"seq_length={seq_length}.")
    return FisherSettings(calibration, int(samples), int(seq_length))


def load_tokenizer(candidates: Iterable[ModelReader]):
    """The tokenizer of the first candidate that has one (a LoRA adapter's base's counts)."""
    tried = []
    for reader in candidates:
        tried.append(reader.label)
        if tokenizer_folder(reader) is not None:
            return model_tokenizer.load_tokenizer(reader)
    raise InputError(f"The fisher method needs a tokenizer for the calibration text, and none of "
                     f"{', '.join(repr(t) for t in tried)} has one.")


def calibration_blocks(settings: FisherSettings, tokenizer) -> tuple[torch.Tensor, list[str]]:
    """The first `samples` blocks of seq_length tokens of the calibration text, and any warnings."""
    from fusion_gui.engine.distill.data import pack, read_documents

    # pack() rather than load_blocks(): every block is used, none is held out for evaluation.
    blocks = pack(read_documents(settings.calibration), tokenizer, settings.seq_length)
    if len(blocks) == 0:
        raise InputError(f"The calibration text '{settings.calibration}' is too short to make one "
                         f"block of {settings.seq_length} tokens.")
    warnings = []
    if len(blocks) < settings.samples:
        warnings.append(f"The calibration text '{settings.calibration}' makes only {len(blocks)} blocks of "
                        f"{settings.seq_length} tokens; the Fisher uses those instead of {settings.samples}.")
    return blocks[: settings.samples], warnings


# --- the cache ---------------------------------------------------------------------------------

def cache_root() -> Path:
    """Where estimated Fishers are kept: FUSION_GUI_CACHE, else the user cache folder."""
    override = os.environ.get("FUSION_GUI_CACHE")
    if override:
        return Path(override).expanduser() / "fisher"
    import platformdirs

    return Path(platformdirs.user_cache_dir("fusion-gui", appauthor=False)) / "fisher"


def cache_key(reader: ModelReader, blocks: torch.Tensor) -> str:
    """Changes when the model's files or the token blocks change (so the calibration text, the
    tokenizer, samples and seq_length are all in it)."""
    digest = hashlib.sha256(f"fisher-v{FORMAT_VERSION}".encode())
    files = list(reader.files)
    if reader.path.is_dir():
        files.append(reader.path / "config.json")
    for path in sorted(set(files)):
        if path.exists():
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    digest.update(blocks.to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


class FisherStore:
    """One model's cached Fisher, read a tensor at a time."""

    def __init__(self, folder: Path, source: ModelReader):
        info = json.loads((folder / _INFO).read_text(encoding="utf-8"))
        self.folder, self.source = folder, source
        self.norm = float(info["norm"])
        self.samples = int(info["samples"])
        self.reader = open_model(str(folder))

    def get(self, name: str) -> torch.Tensor:
        """The Fisher of the model's tensor `name`; zeros for a tensor that is not a parameter."""
        if name in self.reader.tensors:
            return self.reader.get(name)
        return torch.zeros(self.source.tensors[name].shape, dtype=torch.float32)

    def close(self) -> None:
        self.reader.close()


def estimate_to_cache(reader: ModelReader, blocks: torch.Tensor, device: torch.device,
                      cancel: CancelToken | None = None, stage: str = "Fisher"
                      ) -> Generator[Event, None, Path]:
    """Estimate into the cache (atomically: a temporary folder renamed at the end); its folder."""
    root = cache_root()
    final = root / cache_key(reader, blocks)
    if (final / _INFO).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    yield from sweep_partials(root)  # estimates a killed job left behind
    temp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    try:
        claim(temp, "Fisher estimate")
        with ShardedWriter(temp, parameter_plan(reader), 5_000_000_000,
                           metadata={"fisher": "diagonal empirical", "samples": str(len(blocks))}) as writer:
            squares = yield from stream_fisher(reader, blocks, writer.write, temp / "activations", device,
                                               cancel, stage)
            writer.finish()
        shutil.rmtree(temp / "activations", ignore_errors=True)
        info = {"norm": squares ** 0.5, "samples": len(blocks), "seq_length": blocks.shape[1],
                "model": str(reader.path), "format": FORMAT_VERSION}
        (temp / _INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        release(temp)
        try:
            temp.rename(final)
        except OSError:  # another job cached the same Fisher meanwhile
            if not (final / _INFO).is_file():
                raise
        return final
    finally:
        shutil.rmtree(temp, ignore_errors=True)


# --- the merge's side: check, then estimate or reuse ---------------------------------------------

class FisherInputs:
    """Every input's Fisher for the merge loop (a methods.base.Prepared): each weight brings its
    Fisher, whose rows are the weight's rows, and its model's whole-Fisher norm."""

    rows_follow_weights = True

    def __init__(self, stores: dict[str, FisherStore]):
        self.stores = stores

    def tensors_for(self, model: str, tensor: str) -> tuple[torch.Tensor]:
        return (self.stores[model].get(tensor),)

    def model_params(self, model: str) -> dict[str, float]:
        return {"fisher_norm": self.stores[model].norm}

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


def _fisher_models(tasks) -> list[str]:
    return list(dict.fromkeys(s.model for t in tasks if t.floating for s in t.sources))


def _prepare(readers: dict[str, ModelReader], tasks, tokenizer_donor: str | None, vocabulary=None):
    """Settings, models and calibration blocks; every check that needs no tensor data."""
    settings = settings_from_tasks(tasks)
    models = _fisher_models(tasks)
    # One calibration tokenization serves every model only where each keeps the output's token ids
    # (a `tokenizer_source: base` over models of one vocabulary, say).
    if vocabulary is not None and not all(vocabulary.keeps_ids(ref) for ref in models):
        raise InputError("The fisher method cannot merge models with different vocabularies yet; "
                         "use a tokenizer source that keeps one vocabulary.")
    configs = {ref: model_config(readers[ref]).get_text_config() for ref in models}
    for ref, config in configs.items():
        positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if positions and settings.seq_length > positions:
            raise InputError(f"seq_length {settings.seq_length} is longer than '{readers[ref].label}' "
                             f"accepts ({positions} tokens); lower it.")
    candidates = ([readers[tokenizer_donor]] if tokenizer_donor in readers else []) + [readers[m] for m in models]
    blocks, warnings = calibration_blocks(settings, load_tokenizer(candidates))
    for ref, config in configs.items():
        vocab = getattr(config, "vocab_size", None)
        if vocab and int(blocks.max()) >= vocab:
            raise InputError(f"The tokenizer gives token id {int(blocks.max())}, but '{readers[ref].label}' "
                             f"has only {vocab} embedding rows.")
    return settings, models, configs, blocks, warnings


def check_fisher(plan) -> PrepareEstimate:
    """Check the estimation's inputs at plan time and describe it (memory, disk, cache)."""
    readers = plan.readers
    settings, models, configs, blocks, warnings = _prepare(readers, plan.tasks, plan.tokenizer_donor,
                                                           plan.vocabulary)
    count, seq = blocks.shape
    peak, disk, cached = 0, 0, 0
    for ref in models:
        reader, config = readers[ref], configs[ref]
        per_layer: dict[int, int] = {}
        outside = 0
        for name, info in reader.tensors.items():
            layer = layer_of(name)
            numel = info.nbytes // info.dtype.itemsize
            if layer is None:
                outside += numel
            else:
                per_layer[layer] = per_layer.get(layer, 0) + numel
        hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0)
        vocab = getattr(config, "vocab_size", 0) or 0
        stack = count * seq * hidden * 4  # one float32 hidden state per block
        # parameter + gradient + running sum in float32, for a layer or for everything outside
        # the layers (embeddings, head), plus three activation stacks and one block's logits
        peak = max(peak, 12 * max(max(per_layer.values(), default=0), outside) + 3 * stack + 12 * seq * vocab)
        disk = max(disk, len(per_layer) * stack)
        cached += (cache_root() / cache_key(reader, blocks) / _INFO).is_file()
    notes = [f"fisher: each model's Fisher comes first, from {count} blocks of {seq} tokens of "
             f"'{Path(settings.calibration).name}', one layer at a time: about {format_size(peak)} of memory "
             f"and {format_size(disk)} of temporary disk per model; {cached} of {len(models)} already "
             f"cached in {cache_root()}."]
    # each input's Fisher travels with its weight through the merge loop
    return PrepareEstimate(tuple(notes), tuple(warnings), peak, copies_per_input=1)


def estimate_fishers(plan, cancel: CancelToken | None = None) -> Generator[Event, None, FisherInputs]:
    """Every input's Fisher, from the cache or estimated now; yields Log and StepProgress.
    (The plan's warnings already say what the calibration text lacks.)"""
    settings, models, _, blocks, _ = _prepare(plan.readers, plan.tasks, plan.tokenizer_donor, plan.vocabulary)
    stores: dict[str, FisherStore] = {}
    try:
        for ref in models:
            reader = plan.readers[ref]
            folder = cache_root() / cache_key(reader, blocks)
            if (folder / _INFO).is_file():
                yield Log(f"Using the cached Fisher of '{reader.label}' ({folder}).")
            else:
                yield Log(f"Estimating the Fisher of '{reader.label}' on {len(blocks)} blocks of "
                          f"{settings.seq_length} tokens, one layer at a time.")
                start = time.perf_counter()
                folder = yield from estimate_to_cache(reader, blocks, plan.device, cancel,
                                                      stage=f"Fisher of {reader.label}")
                yield Log(f"Fisher of '{reader.label}' estimated in {time.perf_counter() - start:.1f} s "
                          f"and cached in {folder}.")
            stores[ref] = FisherStore(folder, reader)
    except BaseException:
        FisherInputs(stores).close()
        raise
    return FisherInputs(stores)
