"""ModelReader: one checkpoint (a folder or a weights file) opened lazily: names, shapes and dtypes
from headers only, tensor data one at a time."""

from __future__ import annotations

from pathlib import Path

import torch

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.parse_text import load_json
from fusion_gui.engine.io.weight_files import (
    WEIGHT_SUFFIXES, TensorInfo, find_weight_files, load_bin, read_safetensors_header, where,
)


class TensorFiles:
    """What every reader of weight files shares: its files, their count and bytes, `with` closing it.
    ModelReader and the Hub's RemoteReader (headers only) both build on it."""

    _files: list[Path]
    tensors: dict[str, TensorInfo]

    @property
    def files(self) -> list[Path]:
        return list(self._files)

    @property
    def num_shards(self) -> int:
        return len(self._files)

    @property
    def total_bytes(self) -> int:
        return sum(info.nbytes for info in self.tensors.values())

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ModelReader(TensorFiles):
    """One model's tensors, read lazily. get() may run on a reader thread; close() must not
    race with it."""

    def __init__(self, ref: str, path: Path, label: str):
        self.ref, self.path, self.label = ref, path, label
        self.config: dict | None = None
        self.metadata: dict[str, str] = {}
        self._handles: dict[str, object] = {}  # safetensors file name -> open file
        self._bin: tuple[str, dict[str, torch.Tensor]] | None = None  # the .bin file in use
        if path.is_dir():
            files, weight_map = find_weight_files(path)
            self._read_config(path / "config.json")
        elif path.suffix in WEIGHT_SUFFIXES:
            files, weight_map = [path], None
        else:
            raise InputError(f"{where(path)} is not a model: expected a folder or a "
                             f".safetensors, .bin or .pt file.")
        self._files = files
        self.tensors: dict[str, TensorInfo] = {}
        for file in files:
            if file.suffix == ".safetensors":
                infos, meta = read_safetensors_header(file)
                self.metadata = self.metadata or meta
            else:
                loaded = load_bin(file)
                infos = {k: TensorInfo(k, tuple(t.shape), t.dtype, t.numel() * t.element_size(),
                                       file.name) for k, t in loaded.items()}
                self._bin = (file.name, loaded)  # keep the last one: a lone .bin loads once
            for name, info in infos.items():
                if weight_map is None or weight_map.get(name) == file.name:
                    self.tensors.setdefault(name, info)
        if weight_map is not None:
            for name, file in weight_map.items():
                if name not in self.tensors:
                    raise InputError(f"The index in {path} says tensor '{name}' is in {file}, "
                                     f"but that file does not contain it.")

    def _read_config(self, path: Path) -> None:
        if path.is_file():
            config = load_json(path.read_bytes(), where(path))
            if not isinstance(config, dict):
                raise InputError(f"{where(path)} is not a model config: it is not a JSON object.")
            self.config = config

    def _file_path(self, file: str) -> Path:
        return self.path / file if self.path.is_dir() else self.path

    def get(self, name: str) -> torch.Tensor:
        """Read just this tensor (CPU)."""
        info = self.tensors.get(name)
        if info is None:
            raise InputError(f"Model '{self.label}' has no tensor '{name}'.")
        if info.file.endswith(".safetensors"):
            try:
                return self._read_at(info)
            except OSError as e:  # e.g. the file changed on disk since it was opened
                raise InputError(f"Reading tensor '{name}' from "
                                 f"{where(self._file_path(info.file))} failed ({e}).") from None
        cached = self._bin  # a local, so a prefetch thread swapping files cannot break this read
        if cached is None or cached[0] != info.file:
            self._bin = None  # drop the previous file's mapping before loading the next
            cached = self._bin = (info.file, load_bin(self._file_path(info.file)))
        return cached[1][name]

    def _read_at(self, info: TensorInfo) -> torch.Tensor:
        """Read the tensor's bytes straight into a fresh buffer with positioned reads.

        Not mmap: pages of a mapped file count towards the process's resident memory, so
        mapping every shard makes RSS grow to the size of the inputs.
        """
        file = self._handles.get(info.file)
        if file is None:  # opened once, on first use, then reused
            file = self._handles[info.file] = open(self._file_path(info.file), "rb", buffering=0)
        buffer = torch.empty(info.nbytes, dtype=torch.uint8)
        view, done = memoryview(buffer.numpy()), 0
        while done < info.nbytes:
            file.seek(info.offset + done)
            n = file.readinto(view[done:])
            if not n:
                raise OSError(f"unexpected end of file at byte {info.offset + done}")
            done += n
        return buffer.view(info.dtype).reshape(info.shape)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        self._bin = None

    def __repr__(self) -> str:
        return f"ModelReader({self.label!r}, {len(self.tensors)} tensors, {self.num_shards} files)"
