"""What the command line prints: the progress bar, the dry-run plan, diff reports, method docs."""

from __future__ import annotations

import csv
import json
import math
import sys

from fusion_gui.events import DiffResult, LayerMetrics, Log, PlanSummary, Progress, StepProgress


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


class ProgressPrinter:
    """A tqdm bar over output bytes, with tensors done in the postfix; log lines above it."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None
        self.stage = None  # the StepProgress stage the bar counts, if it counts steps

    def show(self, event) -> None:
        if isinstance(event, Log):
            text = ("warning: " if event.level == "warning" else "") + event.message
            if self.bar is not None:
                self.bar.write(text, file=sys.stderr)
            elif self.enabled or event.level == "warning":
                print(text, file=sys.stderr)
        elif isinstance(event, StepProgress) and self.enabled:  # work before the merge, e.g. a Fisher
            if self.stage != event.stage:
                from tqdm import tqdm

                self.close()
                self.bar = tqdm(total=event.total, desc=event.stage, file=sys.stderr, leave=False,
                                dynamic_ncols=True)
                self.stage = event.stage
            self.bar.update(event.done - self.bar.n)
        elif isinstance(event, Progress) and self.enabled:
            if self.stage is not None:
                self.close()
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=event.bytes_total, unit="B", unit_scale=True, unit_divisor=1000,
                                file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
                                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")
            self.bar.update(event.bytes_done - self.bar.n)
            self.bar.set_postfix_str(f"{event.tensors_done}/{event.tensors_total} tensors", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.stage = None


def describe_plan(plan) -> str:
    s: PlanSummary = plan.summary
    lines = [
        "Dry run: nothing is written.",
        f"  method:          {s.method}",
        f"  models:          {', '.join(s.models)}",
        f"  base model:      {s.base_model or '-'}",
        f"  output:          {s.out_dir}",
        f"  tensors:         {s.tensors} ({s.num_layers} layers)",
        f"  output size:     {human_bytes(s.output_bytes)} in {s.shards} shard(s) of at most "
        f"{human_bytes(plan.shard_bytes)}, dtype {s.out_dtype}",
        f"  device:          {s.device}",
        f"  largest tensor:  {s.largest_tensor}",
        f"  est. peak memory: {human_bytes(s.estimated_peak_bytes)} (the merge's own, besides Python and torch)",
        "  files:           config.json, generation_config.json, tokenizer files, README.md, "
        "mergekit_config.yml, " + ("model.safetensors" if s.shards == 1 else
                                  f"model-00001-of-{s.shards:05d}.safetensors ... + model.safetensors.index.json"),
    ]
    lines += [f"  note: {n}" for n in s.notes]
    lines += [f"  warning: {w}" for w in s.warnings]
    return "\n".join(lines)


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.4g}"


def _layer_row(m: LayerMetrics) -> list[str]:
    return (["-" if m.layer is None else str(m.layer)] + [_fmt(v) for v in m.input_change]
            + [_fmt(m.cosine), _fmt(m.sign_conflict)])


def diff_report(result: DiffResult, as_json: bool = False, csv_path: str | None = None) -> str:
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["tensor", "layer", "kind", "numel"] + [f"change:{m}" for m in result.tensors[0].models]
                       + ["cosine", "sign_conflict"] if result.tensors else ["tensor"])
            for t in result.tensors:
                w.writerow([t.name, "" if t.layer is None else t.layer, t.kind, t.numel]
                           + [f"{v:.8g}" for v in t.input_change]
                           + ["" if t.cosine is None else f"{t.cosine:.8g}",
                              "" if t.sign_conflict is None else f"{t.sign_conflict:.8g}"])
    if as_json:
        def clean(x):
            return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
        return json.dumps({
            "models": list(result.models), "base_model": result.base_model,
            "layers": [{"layer": m.layer, "change": [float(v) for v in m.input_change],
                        "cosine": clean(m.cosine), "sign_conflict": clean(m.sign_conflict)} for m in result.layers],
            "tensors": [{"name": t.name, "layer": t.layer, "kind": t.kind, "numel": t.numel,
                         "change": [float(v) for v in t.input_change], "cosine": clean(t.cosine),
                         "sign_conflict": clean(t.sign_conflict)} for t in result.tensors],
        }, indent=2)
    against = f"base {result.base_model}" if result.base_model else result.models[0]
    models = result.models if result.base_model else result.models[1:]
    header = ["layer"] + [f"change {m}" for m in models] + ["cosine", "sign conflict"]
    rows = [header] + [_layer_row(m) for m in result.layers]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    table = "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
    note = f"Relative change ||model - ref|| / ||ref|| per layer, against {against}."
    return note + "\n" + table + (f"\nPer-tensor metrics written to {csv_path}." if csv_path else "")


def describe_methods() -> str:
    from fusion_gui.engine.methods import registry

    out = []
    for m in registry().values():
        base = {"required": "needs a base model", "optional": "base model optional", "none": "no base model"}[m.base]
        count = f"{m.min_models}+" if m.max_models is None else (
            str(m.min_models) if m.min_models == m.max_models else f"{m.min_models}-{m.max_models}")
        out.append(f"{m.name} — {m.pretty_name}: {m.description}")
        out.append(f"    {base}; {count} model{'' if count == '1' else 's'}{'; random (seeded by random_seed / --seed)' if m.random else ''}")
        if m.reference:
            out.append(f"    paper: {m.reference}")
        for p in m.params:
            scope = "per model" if p.scope == "model" else "global"
            if not p.per_tensor:
                scope += ", one value for the merge"
            default = "required" if p.required else f"default {p.default}"
            rng = ""
            if p.minimum is not None or p.maximum is not None:
                rng = f", range [{_fmt(p.minimum) if p.minimum is not None else '-inf'}, " \
                      f"{_fmt(p.maximum) if p.maximum is not None else 'inf'}]"
            out.append(f"    - {p.name} ({p.type.__name__}, {scope}, {default}{rng}): {p.help}")
        out.append("")
    return "\n".join(out).rstrip()
