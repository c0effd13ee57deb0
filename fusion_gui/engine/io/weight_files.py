"""Weight files: safetensors dtypes and headers (parsed without reading data), weights-only
.bin loading, and which files of a model folder hold its weights."""

from __future__ import annotations

import os
import pickle
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.parse_text import load_json

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
_DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}
MAX_HEADER_BYTES = 100_000_000  # the limit the safetensors library itself enforces
_SHARD = re.compile(r"^(.+)-(\d+)-of-(\d+)\.(safetensors|bin)$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def safetensors_dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> 'BF16'; ValueError for a dtype safetensors cannot store."""
    try:
        return _DTYPE_NAMES[dtype]
    except KeyError:
        raise ValueError(f"safetensors cannot store dtype {dtype}") from None


def dtype_size(dtype: torch.dtype) -> int:
    """Bytes per element."""
    return dtype.itemsize


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int
    file: str  # weight file name, relative to the model folder
    offset: int = -1  # where the data starts in a safetensors file (-1 for .bin)


def where(path: Path) -> str:
    return f"{path.name} in {path.parent}"


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse the 8-byte length + JSON header ourselves: cheap, and catches truncation up front."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{where(path)} is not a safetensors file: it is only {size} bytes.")
            n = struct.unpack("<Q", head)[0]
            if n > min(size - 8, MAX_HEADER_BYTES):
                raise InputError(f"{where(path)} has a corrupt header: its length field says "
                                 f"{n} bytes, the file has {size} bytes.")
            raw = f.read(n)
    except OSError as e:  # permissions, a disk error, a file removed since the folder was listed
        raise InputError(f"Cannot read {where(path)}: {e.strerror or e}.") from None
    header = load_json(raw, f"{where(path)} has a corrupt header: it")
    if not isinstance(header, dict):
        raise InputError(f"{where(path)} has a corrupt header: it is not a JSON object.")
    meta = header.pop("__metadata__", None)
    meta = meta if isinstance(meta, dict) else {}
    infos: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int]] = []
    for name, entry in header.items():
        dtype_name = entry.get("dtype") if isinstance(entry, dict) else None
        if not isinstance(dtype_name, str) or dtype_name not in SAFETENSORS_DTYPES:
            raise InputError(f"{where(path)} stores tensor {name!r} as dtype {dtype_name!r}, "
                             f"which fusion-gui cannot read.")
        dtype = SAFETENSORS_DTYPES[dtype_name]
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if (not isinstance(shape, list) or not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(x) is int and x >= 0 for x in shape + offsets)):  # as safetensors: usize only
            raise InputError(f"{where(path)} has a corrupt header: entry {name!r} is "
                             f"malformed.")
        shape, (begin, end) = tuple(shape), offsets
        numel = 1
        for d in shape:
            numel *= d
        nbytes = numel * dtype_size(dtype)
        if end - begin != nbytes or begin < 0:
            raise InputError(f"{where(path)} has a corrupt header: tensor {name!r} has "
                             f"offsets [{begin}, {end}] for {nbytes} bytes of data.")
        spans.append((begin, end))
        infos[name] = TensorInfo(name, shape, dtype, nbytes, path.name, 8 + n + begin)
    data_end = 0
    for begin, end in sorted(spans):  # tensors must tile the data exactly, as safetensors checks
        if begin != data_end:
            raise InputError(f"{where(path)} has a corrupt header: its tensors overlap or leave "
                             f"a gap at byte {min(begin, data_end)}.")
        data_end = end
    have = size - 8 - n
    if data_end > have:
        raise InputError(f"{where(path)} is truncated: header says {data_end} bytes of data, "
                         f"file has {have}.")
    if data_end < have:
        raise InputError(f"{where(path)} is corrupt: {have - data_end} bytes follow its last "
                         f"tensor.")
    return infos, meta


def load_bin(path: Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only (never unsafe pickle); mmap keeps it lazy: no data is read
    until a tensor is used, so a 10 GB shard costs address space, not RAM."""
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            # Legacy (pre-zip) torch.save format cannot be mapped: load it whole, still weights-only.
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported operand" in str(e):  # garbage bytes, not a pickle at all
            raise InputError(f"{where(path)} is not a readable PyTorch checkpoint.") from None
        raise InputError(f"{where(path)} contains Python objects that are not plain tensors; "
                         f"refusing to unpickle it.") from None
    except Exception as e:
        raise InputError(f"{where(path)} is not a readable PyTorch checkpoint ({e}).") from None
    if not isinstance(obj, dict):
        obj = {}
    for key in ("state_dict", "model"):  # training checkpoints often nest the weights once
        if isinstance(obj.get(key), dict) and not any(torch.is_tensor(v) for v in obj.values()):
            obj = obj[key]
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
    if not tensors:
        raise InputError(f"{where(path)} holds no tensors.")
    return tensors


def _read_index(path: Path) -> dict[str, str]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"Cannot read {where(path)}: {e.strerror or e}.") from None
    index = load_json(raw, where(path))
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise InputError(f"{where(path)} is not a valid index: it needs a 'weight_map'.")
    for name, file in weight_map.items():
        # a shard is a file of this folder: not an absolute path, nothing outside it
        if not isinstance(file, str) or not file or Path(file).is_absolute() or ".." in Path(file).parts \
                or "\x00" in file:
            raise InputError(f"{where(path)} names {file!r} as the file of tensor {name!r}; it must be "
                             f"the name of a shard in {path.parent}.")
    for file in dict.fromkeys(weight_map.values()):
        if not (path.parent / file).is_file():
            raise InputError(f"{where(path)} names shard {file}, which is missing from "
                             f"{path.parent}.")
    return weight_map


def find_weight_files(folder: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The weight files of a model folder (safetensors preferred, as transformers does)."""
    stems = ("model", "pytorch_model", "diffusion_pytorch_model")
    for ext in (".safetensors", ".bin"):
        # Standard names first: 'model.fp16.safetensors.index.json' is a variant, not the model.
        exact = [folder / f"{stem}{ext}.index.json" for stem in stems]
        indexes = [p for p in exact if p.is_file()] or sorted(folder.glob(f"*{ext}.index.json"))
        if len(indexes) == 1 or (indexes and indexes[0] in exact):
            weight_map = _read_index(indexes[0])
            return [folder / f for f in dict.fromkeys(weight_map.values())], weight_map
        for stem in stems:
            if (folder / (stem + ext)).is_file():
                return [folder / (stem + ext)], None
        files = sorted(p for p in folder.glob(f"*{ext}") if p.is_file())
        if len(files) == 1:
            return files, None
        shards = [_SHARD.match(p.name) for p in files]
        if files and all(shards) and len({(m[1], m[3]) for m in shards}) == 1:
            expected = int(shards[0][3])
            if len(files) != expected:  # shards without an index: at least insist on all N
                raise InputError(f"{folder} has {len(files)} of the {expected} shards "
                                 f"{shards[0][1]}-*-of-{shards[0][3]}{ext}; some are missing.")
            return files, None
        if files:
            raise InputError(f"{folder} has several {ext} files and no index file telling "
                             f"which ones are the model weights.")
    raise InputError(f"{folder} has no model weights: expected model.safetensors, sharded "
                     f"model-*.safetensors with an index, or pytorch_model.bin.")
