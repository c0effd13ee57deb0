"""Startup time of the packaged app beside the source install: `fusion-gui --help`, and the window until shown.

    python benchmarks/bench_startup.py [--packaged dist/fusion-gui/fusion-gui] [--rounds 7] [--out FILE]

Each round runs all four cases once, interleaved (so load from other jobs hits them alike); the table gives
the median and the range over the rounds, and the packaged/source ratio of the medians. The source install is
`python -m fusion_gui` from this checkout with the current interpreter. "Window shown" is the time from
starting the process until the offscreen Qt platform reports the main window shown (it prints
"propagateSizeHints" when a top-level window is shown), then the process is killed. Every run gets a new empty
home and config folder, so no saved recipe or settings are loaded. The first round warms the page cache
and is left out of the medians (reported beside them).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOWN = "propagateSizeHints"


def _env(home: Path, python_path: bool) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "QT_QPA_PLATFORM": "offscreen",
           "FUSION_GUI_CONFIG_DIR": str(home / "config"), "XDG_RUNTIME_DIR": str(home)}
    if python_path:
        env["PYTHONPATH"] = str(ROOT)
    return env


def time_help(cmd: list[str], home: Path, source: bool) -> float:
    start = time.perf_counter()
    subprocess.run([*cmd, "--help"], env=_env(home, source), check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def time_window(cmd: list[str], home: Path, source: bool) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(home, source), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if SHOWN in line:
                return time.perf_counter() - start
        raise RuntimeError(f"{cmd} exited ({proc.wait()}) before showing its window")
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packaged", default=str(ROOT / "dist" / "fusion-gui" / "fusion-gui"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args()
    commands = {"packaged": [str(Path(args.packaged).resolve())], "source": [sys.executable, "-m", "fusion_gui"]}
    cases = [(what, kind) for what in ("--help", "window shown") for kind in ("packaged", "source")]
    times: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    for _ in range(args.rounds):
        for what, kind in cases:
            with tempfile.TemporaryDirectory(prefix="fusion-startup-") as home:
                measure = time_help if what == "--help" else time_window
                times[(what, kind)].append(measure(commands[kind], Path(home), kind == "source"))
    lines = [f"# Startup time, packaged app vs source install ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)",
             f"commit {_commit()}; {_machine()}",
             f"python {platform.python_version()}; {args.rounds} rounds interleaved, first round (cold) left out "
             "of the medians", "",
             f"{'case':<14} {'install':<9} {'median s':>9} {'min-max s':>13} {'first s':>8} {'vs source':>10}"]
    for what, kind in cases:
        warm = times[(what, kind)][1:] or times[(what, kind)]
        median = statistics.median(warm)
        base = statistics.median(times[(what, "source")][1:] or times[(what, "source")])
        lines.append(f"{what:<14} {kind:<9} {median:>9.2f} {min(warm):>6.2f}-{max(warm):<6.2f} "
                     f"{times[(what, kind)][0]:>8.2f} {median / base:>9.2f}x")
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        Path(args.out).write_text(report)


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def _machine() -> str:
    model = "unknown CPU"
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.system()} {platform.machine()}, {model}, {os.cpu_count()} cores, load average {load:.1f} at the end"


if __name__ == "__main__":
    main()
