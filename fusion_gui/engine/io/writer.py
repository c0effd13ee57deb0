"""Stream tensors into pre-sized safetensors shards: headers first, one tensor in memory at a time."""

from __future__ import annotations

import errno
import json
import os
import queue
import re
import shutil
import threading
from pathlib import Path
from typing import Sequence

import torch

from fusion_gui.engine.errors import OutputError
from fusion_gui.engine.io.weight_files import dtype_size, safetensors_dtype_name

PlannedTensor = tuple[str, tuple[int, ...], torch.dtype]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)\s*([kmgt]?)(i?)(b?)\s*$", re.I)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str | int) -> int:
    """'5GB' -> 5e9, '5GiB' -> 5*2**30, '1.5G', '500MB', '2e9'. GB is 1e9 as in mergekit and
    transformers. A bare 'B' suffix means billions ('5B' = 5e9), as mergekit's parse_kmb has it."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise ValueError(f"Cannot read the size {text!r}: write e.g. 5GB, 500MB, 1.5G or 2e9.")
        number, prefix, binary, b = m.groups()
        if binary and not prefix:
            raise ValueError(f"Cannot read the size {text!r}: write e.g. 5GB, 500MB, 1.5G or 2e9.")
        power = _POWERS[prefix.lower()] if prefix or not b else 3  # '5B': billions
        size = int(round(float(number) * (1024 if binary else 1000) ** power))
    if size <= 0:
        raise ValueError(f"The size {text!r} must be more than zero bytes.")
    return size


def format_size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _mount_point(folder: Path) -> Path:
    path = Path(os.path.abspath(folder))
    while not os.path.ismount(path) and path.parent != path:
        path = path.parent
    return path


def _errno(err: BaseException) -> int | None:
    if isinstance(err, OSError):
        return err.errno
    found = re.search(r"os error (\d+)", str(err))  # safetensors' message: 'I/O error: ... (os error 28)'
    return int(found[1]) if found else None


def disk_error(folder: Path, err: BaseException, needed: int, file_bytes: int | None = None,
               advice: str = "choose a smaller --out-shard-size or another disk",
               what: str = "the output") -> OutputError | None:
    """One sentence for a write the disk refused (full, over quota, a file too large for it), naming
    the folder, its disk and the space needed; None for any other error."""
    folder, code = Path(folder), _errno(err)
    if code in _DISK_FULL:
        try:
            free = f", {format_size(shutil.disk_usage(folder).free)} free"
        except OSError:
            free = ""
        return OutputError(f"Not enough disk space in {folder} (the disk mounted at {_mount_point(folder)}): "
                           f"{what} needs {format_size(needed)}{free}.")
    if code == errno.EFBIG:  # FAT32 stops at 4 GB a file; a process file-size limit does the same
        too_big = f" a file of {format_size(file_bytes)}" if file_bytes else " a file this large"
        return OutputError(f"The disk mounted at {_mount_point(folder)} refused{too_big} in {folder} (file too "
                           f"large); {what} needs {format_size(needed)}, so {advice}.")
    return None


def _nbytes(shape: Sequence[int], dtype: torch.dtype) -> int:
    numel = 1
    for d in shape:
        numel *= int(d)
    return numel * dtype_size(dtype)


def plan_shards(tensors: Sequence[PlannedTensor], max_shard_bytes: int) -> list[list[str]]:
    """Group tensor names into shards, in order; like mergekit, start a new shard when the next
    tensor would overflow, so a tensor bigger than the limit sits alone in its shard."""
    if max_shard_bytes <= 0:
        raise ValueError("max_shard_bytes must be positive")
    shards: list[list[str]] = []
    current, size = [], 0
    for name, shape, dtype in tensors:
        nbytes = _nbytes(shape, dtype)
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    if current or not shards:
        shards.append(current)
    return shards


def shard_name(i: int, n: int) -> str:
    return "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"


def _pwrite(fd: int, data: memoryview, offset: int) -> None:
    while len(data):  # pwrite may write less than asked (e.g. >2 GB on Linux)
        if hasattr(os, "pwrite"):
            n = os.pwrite(fd, data, offset)
        else:  # Windows: no pwrite; only one thread writes, so seek + write is safe
            os.lseek(fd, offset, os.SEEK_SET)
            n = os.write(fd, data)
        data, offset = data[n:], offset + n


class ShardedWriter:
    """Creates every shard with its full header and size up front; write() fills tensors in."""

    def __init__(self, out_dir: Path, tensors: Sequence[PlannedTensor], max_shard_bytes: int,
                 metadata: dict[str, str] | None = None):
        self.out_dir = Path(out_dir)
        groups = plan_shards(tensors, max_shard_bytes)
        planned = {name: (tuple(int(d) for d in shape), dtype) for name, shape, dtype in tensors}
        if len(planned) != len(tensors):
            raise ValueError("the tensor plan names a tensor twice")
        self.shard_files = [shard_name(i, len(groups)) for i in range(len(groups))]
        meta = {"format": "pt", **{str(k): str(v) for k, v in (metadata or {}).items()}}
        self._order = [name for name, _, _ in tensors]
        self._where: dict[str, tuple[int, int, tuple[int, ...], torch.dtype]] = {}
        headers, sizes = [], []
        for shard, names in enumerate(groups):
            header: dict = {"__metadata__": meta}
            offset = 0
            for name in names:
                shape, dtype = planned[name]
                end = offset + _nbytes(shape, dtype)
                header[name] = {"dtype": safetensors_dtype_name(dtype), "shape": list(shape),
                                "data_offsets": [offset, end]}
                offset = end
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % 8)  # pad so tensor data starts 8-byte aligned
            blob = len(raw).to_bytes(8, "little") + raw
            for name in names:
                begin = header[name]["data_offsets"][0]
                self._where[name] = (shard, len(blob) + begin, *planned[name])
            headers.append(blob)
            sizes.append(len(blob) + offset)
        self.total_bytes = sum(_nbytes(*planned[n]) for n in self._order)
        self._written: set[str] = set()
        self._fds: list[int] = []
        self._closed = False
        self._create(headers, sizes)

    def _fail(self, what: str, e: OSError, file_bytes: int | None = None) -> OutputError:
        # the temporary folder is an implementation detail: a full disk names the folder the user chose
        return (disk_error(self.out_dir.parent, e, self.total_bytes, file_bytes)
                or OutputError(f"Cannot {what} in {self.out_dir}: {e.strerror or e}."))

    def _no_space(self, needed: int) -> OutputError:
        return disk_error(self.out_dir.parent, OSError(errno.ENOSPC, "No space left on device"), needed)

    def _create(self, headers: list[bytes], sizes: list[int]) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._fail("create the output folder", e) from None
        needed = sum(sizes)
        if shutil.disk_usage(self.out_dir).free < needed:
            raise self._no_space(needed)
        try:
            for name, blob, size in zip(self.shard_files, headers, sizes):
                flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
                try:
                    fd = os.open(self.out_dir / name, flags, 0o644)
                except OSError as e:
                    raise self._fail(f"create {name}", e) from None
                self._fds.append(fd)
                try:
                    self._allocate(fd, size)
                    _pwrite(fd, memoryview(blob), 0)
                except OSError as e:  # a full disk fails now, not 3 hours in
                    raise self._fail(f"write {name}", e, size) from None
        except BaseException:
            self.abort()
            raise

    @staticmethod
    def _allocate(fd: int, size: int) -> None:
        if size and hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(fd, 0, size)
                return
            except OSError as e:
                if e.errno in _DISK_FULL or e.errno == errno.EFBIG:
                    raise
                # EOPNOTSUPP/EINVAL: the filesystem cannot reserve; a sparse file will do.
        os.ftruncate(fd, size)

    def _check(self, name: str, tensor: torch.Tensor) -> tuple[int, int]:
        if self._closed:
            raise ValueError("the writer is closed")
        if name not in self._where:
            raise ValueError(f"tensor '{name}' is not in the output plan")
        shard, offset, shape, dtype = self._where[name]
        if tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise ValueError(f"tensor '{name}' is {tuple(tensor.shape)} {tensor.dtype}, the plan "
                             f"says {shape} {dtype}")
        if name in self._written:
            raise ValueError(f"tensor '{name}' was written twice")
        self._written.add(name)
        return shard, offset

    def _write_bytes(self, name: str, shard: int, offset: int, tensor: torch.Tensor) -> None:
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        try:
            _pwrite(self._fds[shard], memoryview(data).cast("B"), offset)
        except OSError as e:
            raise self._fail(f"write tensor '{name}' to {self.shard_files[shard]}", e) from None

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Write one tensor at its place; any order. ValueError if it does not match the plan."""
        self._write_bytes(name, *self._check(name, tensor), tensor)

    def finish(self) -> list[Path]:
        """Check completeness, fsync, close; write the index when sharded. Returns the files."""
        missing = next((n for n in self._order if n not in self._written), None)
        if missing is not None:
            self.abort()
            raise OutputError(f"The output in {self.out_dir} is incomplete: tensor '{missing}' "
                              f"was never written.")
        paths = [self.out_dir / f for f in self.shard_files]
        try:
            for fd in self._fds:
                os.fsync(fd)
            self.abort()  # closes the files
            if len(paths) > 1:
                weight_map = {n: self.shard_files[self._where[n][0]] for n in self._order}
                index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
                paths.append(self.out_dir / "model.safetensors.index.json")
                with open(paths[-1], "w", encoding="utf-8") as f:
                    json.dump(index, f, indent=2)
                    f.write("\n")
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as e:
            self.abort()
            raise self._fail("finish writing the output", e) from None
        return paths

    def abort(self) -> None:
        """Close the files (idempotent); deleting the partial output is the caller's job."""
        self._closed = True
        while self._fds:
            try:
                os.close(self._fds.pop())
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.abort()  # after finish() this is a no-op; on an exception it closes the files


class AsyncShardedWriter(ShardedWriter):
    """write() hands tensors to one background thread through a small queue, so writing overlaps
    the next tensor's math while memory stays bounded (`queue_size` waiting + 1 being written). A write
    error is raised in the caller by the next write() or finish(). Do not modify a tensor in place
    after passing it to write()."""

    def __init__(self, *args, queue_size: int = 2, **kwargs):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._error: BaseException | None = None
        self._stopping = False
        super().__init__(*args, **kwargs)
        self._thread = threading.Thread(target=self._run, name="fusion-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            # After an error or abort, keep draining so a blocked put() always returns.
            if self._error is None and not self._stopping:
                try:
                    self._write_bytes(*item)
                except BaseException as e:
                    self._error = e

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, name: str, tensor: torch.Tensor) -> None:
        self._raise_pending()
        self._queue.put((name, *self._check(name, tensor), tensor))

    def _drain(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def finish(self) -> list[Path]:
        self._drain()
        if self._error is not None:
            self.abort()
            raise self._error
        return super().finish()

    def abort(self) -> None:
        self._stopping = True  # pending tensors are dropped, not written
        if getattr(self, "_thread", None) is not None:
            self._drain()
        super().abort()
