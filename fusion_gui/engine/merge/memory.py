"""A merge's own memory: what the plan expects the loop to hold at most, and what the job used.

Both describe the job alone, never the process around it: in the app the process also holds
models loaded in other tabs and plots, which say nothing about what a merge needs. The estimate
depends on the recipe only (the same recipe gives the same figure whatever the process holds);
the measurement is the growth of resident memory above its level when the job started.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Sequence

import psutil

from fusion_gui.engine.merge.tasks import TensorTask
from fusion_gui.engine.methods.base import MergeMethod

WRITE_QUEUE = 3  # outputs the async writer holds: its queue of 2, plus the one being written
# The job's bookkeeping besides tensors: metrics, shard headers, the allocator's gaps; measured at
# 10-30 MB over what the tensors explain (benchmarks/results/memory_bench.txt).
BOOKKEEPING = 48 << 20
# The same merge measured 10% apart between runs (threads' allocator arenas fill in another order),
# so a method's scratch counts 10% more than its one-tensor measurement.
SCRATCH_MARGIN = 1.1


def _numel(task: TensorTask) -> int:
    return task.out_bytes // task.out_dtype.itemsize


def _inputs(task: TensorTask, prepared_copies: int) -> int:
    """One task's input tensors in the compute dtype, with what a prepare step gives beside them."""
    n, numel = len(task.sources), _numel(task)
    held = n * numel * task.compute_dtype.itemsize
    if task.permute_vocab:  # re-ordered into the output tokenizer: a second copy while it is built
        held *= 2
    return held + n * numel * 4 * prepared_copies if task.floating else held


def _working(method: MergeMethod, task: TensorTask) -> int:
    """The method's scratch and the output for one task, cast to the output dtype if it differs."""
    numel = _numel(task)
    if not task.floating:
        return task.out_bytes
    held = int(method.scratch(len(task.sources), task.compute_dtype.itemsize) * SCRATCH_MARGIN * numel)
    if task.out_dtype != task.compute_dtype:
        held += task.out_bytes
    return held


def task_memory(method: MergeMethod, tasks: Sequence[TensorTask], cast_bytes: Sequence[int], prefetch: int,
                async_io: bool, prepared_copies: int = 0) -> list[int]:
    """For each task: bytes the merge loop holds while computing it with one model's work at a time.

    That is the task's inputs, the next `prefetch` tasks' inputs (read ahead; the last one may be
    held once more in its stored dtype while it is cast: `cast_bytes`, per task), the method's scratch
    and output, and the outputs of the previous tasks still in the write queue.
    """
    inputs = [_inputs(t, prepared_copies) for t in tasks]
    held = []
    for i, task in enumerate(tasks):
        total = inputs[i] + sum(inputs[i + 1:i + 1 + prefetch]) + _working(method, task)
        if i + prefetch < len(tasks):
            total += cast_bytes[i + prefetch]
        if async_io:
            total += sum(t.out_bytes for t in tasks[max(0, i - WRITE_QUEUE):i])
        held.append(total)
    return held


def side_by_side_widths(method: MergeMethod, tasks: Sequence[TensorTask], held: Sequence[int],
                        budget: int, workers: int) -> list[int]:
    """For each task: how many models' work may run at once while the loop stays within `budget`
    (1 where the method does nothing side by side)."""
    widths = []
    for task, base in zip(tasks, held):
        extra = method.side_by_side_scratch
        models = len(task.sources) - (1 if task.base_index is not None else 0)
        if extra is None or not task.floating or models < 2:
            widths.append(1)
            continue
        each = extra(task.compute_dtype.itemsize) * _numel(task)
        fits = 1 + int(max(0, budget - base) // max(1.0, each))
        widths.append(max(1, min(models, workers, fits)))
    return widths


def peak_with(method: MergeMethod, tasks: Sequence[TensorTask], held: Sequence[int],
              widths: Sequence[int]) -> int:
    """The loop's peak when each task runs `widths` models' work side by side."""
    extra = method.side_by_side_scratch
    peak = 0
    for task, base, width in zip(tasks, held, widths):
        more = (width - 1) * extra(task.compute_dtype.itemsize) * _numel(task) if extra else 0
        peak = max(peak, base + int(more))
    return peak + BOOKKEEPING


def _trim_allocator() -> None:
    """Hand the C allocator's free memory back to the system (glibc), so that memory freed before the
    job, and reused by it, shows as growth rather than hiding inside the starting level."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


class JobMemory:
    """Peak growth of resident memory (RSS) above its level at start(), sampled by a thread.

    RSS rather than tracemalloc or torch's allocator statistics: tracemalloc does not see torch's
    tensors, and torch keeps no statistics for CPU memory; RSS counts every buffer the job touches.
    A sample every few milliseconds catches any large buffer (filling one takes longer than that).
    Other work in the same process at the same time is counted too; a job in the app runs alone.
    """

    def __init__(self, interval: float = 0.005):
        self._interval = interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start_rss = 0
        self._peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def start(self) -> "JobMemory":
        _trim_allocator()
        self.start_rss = self._peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, name="fusion-memory", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling; the peak growth in bytes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        return self.peak_bytes

    @property
    def peak_bytes(self) -> int:
        return max(0, self._peak - self.start_rss)
