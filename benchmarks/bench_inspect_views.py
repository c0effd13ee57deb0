"""The inspection views under load: the similarity matrix of 6 fine-tunes of ~0.55 GB each (real bf16
safetensors, built under .bench/inspect once: a Llama-shaped base of 16 layers, hidden 1024, MLP 2816,
32000 tokens, and 6 fine-tunes in two families of 3 that share a change direction plus their own noise),
first as the engine alone, then through the real window's Inspect tab; and a drill-down of the largest
tensor (the embedding, 32000 x 1024) of the 6 models through a click on the Merge view's heatmap.

A 5 ms QTimer heartbeat runs on the GUI thread during each GUI phase (bench_gui_latency.py's method);
how late each tick fires is how long the window could not repaint or take a click.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_inspect_views.py [--out FILE] [--stalls]

Goal (issue 17): the window never stalls more than 100 ms.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("FUSION_GUI_CONFIG_DIR", str(Path(__file__).resolve().parent.parent / ".bench" / "config"))

from bench_gui_latency import (  # noqa: E402
    GOAL_MAX_MS, GOAL_P99_MS, STALL_MS, Heartbeat, background_idle, header, print_report, spin,
)
from bench_merge import WORK  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHAPE = dict(layers=16, hidden=1024, inter=2816, vocab=32000)
FAMILIES = 2  # fine-tunes 0-2 share one change direction, 3-5 another
EMBED = "model.embed_tokens.weight"


def _shapes(layers: int, hidden: int, inter: int, vocab: int) -> dict[str, tuple[int, ...]]:
    out = {EMBED: (vocab, hidden), "lm_head.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    for i in range(layers):
        p = f"model.layers.{i}."
        out.update({p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,)})
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[p + f"self_attn.{n}.weight"] = (hidden, hidden)
        out.update({p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
                    p + "mlp.down_proj.weight": (hidden, inter)})
    return out


def build_models(root: Path) -> list[Path]:
    """[base, ft0..ft5] as single-file bf16 safetensors folders (reused when already built)."""
    import torch
    from safetensors.torch import save_file

    names = ["base"] + [f"ft{k}" for k in range(6)]
    folders = [root / n for n in names]
    if all((f / "model.safetensors").exists() for f in folders):
        return folders
    shapes = _shapes(**SHAPE)
    base = {n: (torch.randn(s, generator=torch.Generator().manual_seed(i)) * 0.02).to(torch.bfloat16)
            for i, (n, s) in enumerate(shapes.items())}
    for k, folder in enumerate(folders):
        folder.mkdir(parents=True, exist_ok=True)
        if k == 0:
            tensors = base
        else:
            tensors = {}
            for i, (n, t) in enumerate(base.items()):
                family = torch.randn(t.shape, generator=torch.Generator().manual_seed(10_000 + i * FAMILIES
                                                                                     + (k - 1) // 3))
                own = torch.randn(t.shape, generator=torch.Generator().manual_seed(100_000 + i * 10 + k))
                tensors[n] = (t.float() + 0.002 * family + 0.0015 * own).to(torch.bfloat16)
        save_file(tensors, str(folder / "model.safetensors"))
        (folder / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": %d}' % SHAPE["layers"])
    return folders


class WorkerStacks(Heartbeat):
    """The heartbeat, recording at each stall what every other thread (the job's) was running."""

    def _watch(self) -> None:
        import threading
        import traceback

        noted = 0.0
        while not self._stop.wait(0.002):
            last = self._last
            if self.phase is None or last == noted or (time.perf_counter() - last) * 1000 < STALL_MS:
                continue
            me = threading.get_ident()
            for ident, frame in sys._current_frames().items():
                if ident in (self._gui_thread, me):
                    continue
                stack = "".join(traceback.format_stack(frame, limit=12)[-4:])
                if "bench_inspect_views" not in stack:
                    self.stalls[self.phase][stack] += 1
            noted = last


class GcPauses:
    """How long each garbage collection took (gc.callbacks), by heartbeat phase: the collector runs on
    the GUI thread in the app (ui/gc_guard.py), and holds the GIL, so a long one is a stall the
    watchdog cannot see."""

    def __init__(self, heartbeat: Heartbeat):
        import gc

        self.heartbeat, self.started, self.pauses = heartbeat, 0.0, {}
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif self.heartbeat.phase is not None:
            self.pauses.setdefault(self.heartbeat.phase, []).append((time.perf_counter() - self.started) * 1000)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def engine_similarity(folders: list[Path]):
    from fusion_gui.engine.inspect.similarity import similarity

    began = time.perf_counter()
    gen = similarity([str(f) for f in folders[1:]], str(folders[0]))
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value, time.perf_counter() - began


def gui_similarity(window, heartbeat: Heartbeat, folders: list[Path]) -> float:
    state = window.session.inspect
    state.set_base(str(folders[0]))
    state.set_models([str(f) for f in folders[1:]])
    window.tabs.setCurrentWidget(window.inspect_panel)
    spin(seconds=0.3)
    heartbeat.start("similarity job")
    began = time.perf_counter()
    worker = window.inspect_panel.similarity.start()
    spin(until=lambda: not worker.running)
    seconds = time.perf_counter() - began
    spin(seconds=0.3)
    heartbeat.stop()
    if window.inspect_panel.similarity.result is None:
        raise SystemExit(f"the similarity job failed: {window.inspect_panel.similarity.status_label.text()}")
    return seconds


def gui_drill_down(window, heartbeat: Heartbeat, folders: list[Path], phase: str) -> tuple[float, object]:
    from fusion_gui.events import TensorMetrics

    window.tabs.setCurrentIndex(0)
    if not window.document.state.model_refs():
        window.strategy_panel.set_method("ties")
        window.models_panel.add_models([str(f) for f in folders])
        spin(seconds=0.5)
        spin(until=lambda: len(window.document.state.model_refs()) == len(folders) and background_idle(window))
    # the heatmap cell a merge of these would fill: the drill-down opens from a click on it
    window.merge_plots.handle_event(TensorMetrics(EMBED, None, "embed", 1, ("x",), np.array([0.1]), 0.1))
    window.merge_plots.flush()
    spin(seconds=0.3)
    heartbeat.start(phase)
    began = time.perf_counter()
    window.merge_plots.heatmap.click_cell(None, "embed")
    dialog = window._drill_down_dialog
    spin(until=lambda: not dialog.runner.running)
    seconds = time.perf_counter() - began
    spin(seconds=0.3)
    heartbeat.stop()
    return seconds, dialog.result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="append the report to this file")
    ap.add_argument("--stalls", action="store_true", help="print the job threads' stacks at each stall")
    ap.add_argument("--phases", default="engine,similarity,drill", help="which of engine, similarity, drill to run (the GUI ones in this order)")
    args = ap.parse_args()
    args.layers, args.hidden = SHAPE["layers"], SHAPE["hidden"]
    lines = header(args)[:-1]
    built = time.perf_counter()
    folders = build_models(WORK / "inspect")
    size = (folders[1] / "model.safetensors").stat().st_size / 1e9
    lines.append(f"models: base + 6 fine-tunes, {size:.2f} GB each (bf16, real data), ready in "
                 f"{time.perf_counter() - built:.1f} s")
    phases = set(args.phases.split(","))
    seconds = None
    if "engine" in phases:
        result, seconds = engine_similarity(folders)
        lines.append(f"engine alone: similarity of 6 x {size:.2f} GB against the base in {seconds:.1f} s "
                     f"({7 * size / seconds:.2f} GB/s read), peak RSS {peak_rss_mb():.0f} MB; clustered order "
                     f"{', '.join(result.models[i] for i in result.order)}; cosine ft0~ft1 "
                     f"{result.whole.cosine[0, 1]:.3f}, ft0~ft3 {result.whole.cosine[0, 3]:.3f}")

    from PySide6.QtWidgets import QApplication

    from fusion_gui.engine.inspect import tensor as tensor_mod
    from fusion_gui.ui.app import create_app
    from fusion_gui.ui.main_window import MainWindow

    app = QApplication.instance() or create_app([])  # noqa: F841 - the window needs it alive
    window = MainWindow()
    window.resize(1280, 800)
    window.show()
    heartbeat = WorkerStacks()
    gc_pauses = GcPauses(heartbeat)
    try:
        spin(seconds=0.5)
        heartbeat.start("idle (the machine)")
        spin(seconds=3)
        heartbeat.stop()
        for phase in [p for p in args.phases.split(",") if p != "engine"]:  # in the order given
            if phase == "similarity":
                gui_seconds = gui_similarity(window, heartbeat, folders)
                ratio = f" ({gui_seconds / seconds:.2f}x the engine alone)" if seconds else ""
                lines.append(f"GUI: the same similarity job from the Inspect tab in {gui_seconds:.1f} s{ratio}")
            elif phase == "drill":
                tensor_mod.clear_cache()
                drill, r = gui_drill_down(window, heartbeat, folders, "drill-down (embed x 6)")
                again, r2 = gui_drill_down(window, heartbeat, folders, "drill-down reopened")
                lines.append(f"GUI: drill-down of {r.name} {list(r.shape)} for 6 models ({r.svd} spectrum) from a "
                             f"heatmap click in {drill:.1f} s; reopened in {again * 1000:.0f} ms "
                             f"(cached={r2.cached}); peak RSS {peak_rss_mb():.0f} MB")
    finally:
        heartbeat.close()
        window.job_list.stop_all()
        if getattr(window, "_drill_down_dialog", None) is not None:
            window._drill_down_dialog.close()
        window.close()
    lines.append("")
    lines.append(f"{'phase':<26}{'ticks':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'>100 ms':>9}"
                 f"{'gc max ms':>11}  goal (max < 100; p99 < 16)")
    for phase in heartbeat.ticks:
        late = heartbeat.lateness_ms(phase)
        p50, p99, worst = np.percentile(late, 50), np.percentile(late, 99), late.max()
        verdict = ("met" if worst < GOAL_MAX_MS and p99 < GOAL_P99_MS
                   else "max met, p99 missed" if worst < GOAL_MAX_MS else "MISSED")
        gc_max = max(gc_pauses.pauses.get(phase, [0.0]))
        lines.append(f"{phase:<26}{len(late):>7}{p50:>9.1f}{p99:>9.1f}{worst:>9.1f}{int((late > 100).sum()):>9}"
                     f"{gc_max:>11.1f}  {verdict}")
    pressure = Path("/proc/pressure/cpu")
    if pressure.exists():
        lines.append(f"CPU pressure at the end (the share of time some task waited for a CPU): "
                     f"{pressure.read_text().splitlines()[0]}")
    print_report(lines, heartbeat, args, stacks=3)


if __name__ == "__main__":
    main()
