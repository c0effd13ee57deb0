"""How long the real main window's GUI thread cannot answer, in three phases a user goes through:

1. add   - three 70B-shaped models (real safetensors headers over sparse holes, ~141 GB each on paper,
           with a 122k-token tokenizer each), dropped in one at a time a second apart; the models table
           describes them, the pre-flight plans them and the tokenizer panel compares the vocabularies.
2. edit  - a union tokenizer merge is chosen, then 20 parameter edits spaced like a user's (250-400 ms)
           through the strategy panel; each edit reruns the pre-flight, which builds the union vocabulary.
3. merge - a TIES merge of three ~1 GB checkpoints (bench_merge.py's, built under .bench/ if needed).

A 5 ms QTimer heartbeat runs on the GUI thread throughout (and for 3 s before, with the window idle:
what the machine's own load costs); how late each tick fires is the time the
window could not repaint or take a click. A watchdog thread notes what the GUI thread was running
whenever a tick is more than STALL_MS late (--stalls prints those stacks).

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_latency.py [--layers 24] [--out FILE] [--stalls]

Goal (issue 10): p99 under 16 ms (one frame at 60 Hz) and max under 100 ms in every phase.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("FUSION_GUI_CONFIG_DIR", str(Path(__file__).resolve().parent.parent / ".bench" / "config"))

from bench_merge import WORK, build_checkpoints  # noqa: E402
from sparse_models import write_sparse_model  # noqa: E402

HEARTBEAT_MS = 5
STALL_MS = 30  # a tick this late gets its GUI-thread stack recorded
GOAL_P99_MS, GOAL_MAX_MS = 16.0, 100.0
EDIT_GAPS_MS = (250, 400, 300, 350)  # a user's pace between edits, in turn
COMMON_WORDS, OWN_WORDS = 120_000, 2_000  # each tokenizer: the shared words plus its own (Llama 3: 128k)


class Heartbeat:
    """A 5 ms timer on the GUI thread; each phase keeps its ticks. A watchdog thread records the GUI
    thread's stack when a tick is overdue (it runs whenever the GUI thread lets go of the GIL)."""

    def __init__(self):
        from PySide6.QtCore import QTimer, Qt

        self.timer = QTimer(interval=HEARTBEAT_MS, timerType=Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.ticks: dict[str, list[float]] = {}
        self.stalls: dict[str, Counter] = {}
        self.phase: str | None = None
        self._last = time.perf_counter()
        self._gui_thread = threading.get_ident()
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True)
        self._watchdog.start()

    def _tick(self) -> None:
        self._last = time.perf_counter()
        if self.phase is not None:
            self.ticks[self.phase].append(self._last)

    def _watch(self) -> None:
        noted = 0.0  # the tick whose stall was recorded: one stack per stall
        while not self._stop.wait(0.002):
            last = self._last
            if self.phase is None or last == noted or (time.perf_counter() - last) * 1000 < STALL_MS:
                continue
            frame = sys._current_frames().get(self._gui_thread)
            if frame is not None:
                stack = "".join(traceback.format_stack(frame, limit=12)[-8:])
                self.stalls[self.phase][stack] += 1
                noted = last

    def start(self, phase: str) -> None:
        self.ticks[phase], self.stalls[phase] = [], Counter()
        self.phase = phase
        self._last = time.perf_counter()
        self.ticks[phase].append(self._last)
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self.phase = None

    def close(self) -> None:
        self._stop.set()

    def lateness_ms(self, phase: str) -> np.ndarray:
        return np.maximum(np.diff(np.asarray(self.ticks[phase])) * 1000 - HEARTBEAT_MS, 0)


def spin(seconds: float | None = None, until=None, timeout_s: float = 900.0) -> None:
    """Run the Qt event loop (a real one, as the app's) for a while or until a condition holds."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    began = time.perf_counter()
    poll = QTimer(interval=20)

    def check() -> None:
        waited = time.perf_counter() - began
        if (seconds is not None and waited >= seconds) or (until is not None and until()) or waited > timeout_s:
            loop.quit()

    poll.timeout.connect(check)
    poll.start()
    loop.exec()
    poll.stop()
    if until is not None and not until():
        raise SystemExit(f"gave up waiting after {timeout_s:.0f} s")


def later(ms: int, action) -> None:
    from PySide6.QtCore import QTimer

    QTimer.singleShot(ms, action)


def background_idle(window) -> bool:
    """The pre-flight and the vocabulary comparison have answered."""
    return not window.run_panel.preflight_runner.busy and not window.tokenizer_panel.vocab_runner.busy


def build_sparse_models(root: Path) -> list[Path]:
    common = [f"w{i}" for i in range(COMMON_WORDS)]
    folders = []
    for k in range(3):
        own = [f"m{k}x{i}" for i in range(OWN_WORDS)]
        folders.append(write_sparse_model(root / f"llama70b-{k}", tokenizer_words=common + own))
    return folders


def phase_add(window, heartbeat: Heartbeat, folders: list[Path]) -> None:
    heartbeat.start("add 3 x 70B")
    for k, folder in enumerate(folders):  # dropped one at a time, a second apart
        later(1000 * k, lambda f=folder: window.models_panel.add_models([str(f)]))
    spin(seconds=len(folders) - 0.5)
    spin(until=lambda: background_idle(window))
    spin(seconds=0.3)
    heartbeat.stop()


def phase_edit(window, heartbeat: Heartbeat, folders: list[Path], edits: int) -> None:
    heartbeat.start("edit (union tokenizer)")
    window.tokenizer_panel.set_choice("union")
    at = 0
    for i in range(edits):
        at += EDIT_GAPS_MS[i % len(EDIT_GAPS_MS)]
        if i % 2:
            ref = str(folders[1 + (i // 2) % 2])
            later(at, lambda r=ref, v=round(0.3 + 0.02 * i, 2): window.strategy_panel.set_model_param(r, "weight", v))
        else:
            later(at, lambda v=round(0.5 + 0.05 * (i % 10), 2): window.strategy_panel.set_global("lambda", v))
    spin(seconds=at / 1000 + 0.05)
    spin(until=lambda: background_idle(window))
    spin(seconds=0.3)
    heartbeat.stop()


def phase_merge(window, heartbeat: Heartbeat, paths: list[Path], out: Path) -> float:
    window.document.reset()
    window.strategy_panel.set_method("ties")
    window.models_panel.add_models([str(p) for p in paths])
    window.run_panel.set_output_dir(str(out))
    spin(seconds=0.5)  # the pre-flight's debounce, then its answer: not part of the merge
    spin(until=lambda: background_idle(window))
    heartbeat.start("merge")
    began = time.perf_counter()
    worker = window.run_panel.start_merge()
    if worker is None:
        raise SystemExit("the run panel refused to start the merge")
    spin(until=lambda: not worker.running)
    seconds = time.perf_counter() - began
    spin(seconds=0.3)
    heartbeat.stop()
    if window.run_panel.last_result is None:
        raise SystemExit(f"the merge failed: {window.run_panel.progress_label.text()}")
    return seconds


def header(args) -> list[str]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "unknown", ""
    import PySide6
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return [f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
            f"commit: {commit}{' (with uncommitted changes)' if dirty else ''}",
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"load average at start {load}",
            f"python {platform.python_version()}, PySide6 {PySide6.__version__}, torch {torch.__version__}, "
            f"Qt platform {os.environ.get('QT_QPA_PLATFORM')}",
            f"heartbeat {HEARTBEAT_MS} ms; merge inputs: 3 x {args.layers} layers, hidden {args.hidden}"]


def print_report(lines: list[str], heartbeat: Heartbeat, args, stacks: int) -> None:
    """Print the report (with --stalls, each phase's `stacks` commonest stalled stacks) and, with --out,
    append it to that file."""
    report = "\n".join(lines)
    print(report)
    if args.stalls:
        for phase, counts in heartbeat.stalls.items():
            for stack, count in counts.most_common(stacks):
                print(f"\n--- {phase}: {count} stall(s) over {STALL_MS} ms in\n{stack}")
    if args.out:
        with open(args.out, "a") as f:
            f.write(report + "\n\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--out", help="append the report to this file")
    ap.add_argument("--stalls", action="store_true", help="print the GUI thread's stack at each stall")
    args = ap.parse_args()
    lines = header(args)
    paths = build_checkpoints(args.layers, args.hidden, 32000)

    from PySide6.QtWidgets import QApplication

    from fusion_gui.ui.app import create_app
    from fusion_gui.ui.main_window import MainWindow

    app = QApplication.instance() or create_app([])
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    heartbeat = Heartbeat()
    sparse_root = Path(tempfile.mkdtemp(prefix="fusion-gui-sparse-"))
    out = WORK / "gui-out"
    shutil.rmtree(out, ignore_errors=True)
    try:
        built = time.perf_counter()
        folders = build_sparse_models(sparse_root)
        on_paper = sum(f.stat().st_size for f in folders[0].glob("*.safetensors")) / 1e9
        on_disk = sum(f.stat().st_blocks * 512 for f in folders[0].rglob("*") if f.is_file()) / 1e3
        lines.append(f"sparse models: 3 x {on_paper:.0f} GB on paper, {on_disk:.0f} KB on disk each "
                     f"(tokenizers of {COMMON_WORDS + OWN_WORDS + 3:,} tokens), built in "
                     f"{time.perf_counter() - built:.1f} s")
        spin(seconds=0.5)
        heartbeat.start("idle (the machine)")  # the window doing nothing: what the machine's load costs
        spin(seconds=3)
        heartbeat.stop()
        phase_add(window, heartbeat, folders)
        phase_edit(window, heartbeat, folders, args.edits)
        seconds = phase_merge(window, heartbeat, paths, out)
        merged = sum(f.stat().st_size for f in out.glob("*.safetensors")) / 1e9
        lines.append(f"merge: ties, 3 x {sum(f.stat().st_size for f in paths[0].glob('*.safetensors')) / 1e9:.2f} GB "
                     f"-> {merged:.2f} GB in {seconds:.1f} s")
    finally:
        heartbeat.close()
        window.job_list.stop_all()
        window.close()
        shutil.rmtree(sparse_root, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    lines.append("")
    lines.append(f"{'phase':<24}{'ticks':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  goal (p99 < 16, max < 100)")
    for phase in heartbeat.ticks:
        late = heartbeat.lateness_ms(phase)
        p50, p99, worst = np.percentile(late, 50), np.percentile(late, 99), late.max()
        verdict = "met" if p99 < GOAL_P99_MS and worst < GOAL_MAX_MS else "MISSED"
        lines.append(f"{phase:<24}{len(late):>7}{p50:>9.1f}{p99:>9.1f}{worst:>9.1f}  {verdict}")
    print_report(lines, heartbeat, args, stacks=5)


if __name__ == "__main__":
    main()
