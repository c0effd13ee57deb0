"""`fusion-gui merge RECIPE OUT_DIR`: merge as a mergekit-style recipe says, or print the plan (--dry-run)."""

from __future__ import annotations

import sys
from pathlib import Path

from fusion_gui.cli.drive import EXIT_OK, quiet_transformers, smoke_line
from fusion_gui.cli.hub_models import add_download_flag, fetch_missing, planned_from_headers
from fusion_gui.cli.recording import drive_recorded, open_history
from fusion_gui.formatting import format_bytes


def add_parser(sub) -> None:
    m = sub.add_parser("merge", help="merge models as a mergekit-style YAML recipe says")
    m.add_argument("config", help="recipe YAML file")
    m.add_argument("out_dir", help="output folder (must not exist, unless --force)")
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    m.add_argument("--out-shard-size", default="5GB", help="largest output shard, e.g. 5GB, 500MB (default 5GB)")
    m.add_argument("--seed", type=int, default=None, help="seed for random methods (overrides random_seed)")
    m.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    m.add_argument("--dry-run", action="store_true", help="check everything and print the plan; write nothing")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    m.add_argument("--no-smoke", action="store_true",
                   help="skip the smoke check of the output (tokenizer, config, finite tensors, perplexity)")
    add_download_flag(m)


def run(args) -> int:
    from fusion_gui.engine.merge import MergeOptions, merge, plan_merge
    from fusion_gui.engine.merge.model_paths import describe_moves, resolve_model_paths
    from fusion_gui.engine.merge.recipe import load_recipe

    recipe = load_recipe(args.config)
    # mergekit reads `model: ./ft_a` from the folder it runs in; where that finds nothing, the recipe's own
    # folder is tried, and the user is told
    folder = Path(args.config).expanduser().parent
    recipe, moved = resolve_model_paths(recipe, folder, cwd_first=True)
    if moved:
        print(f"note: {describe_moves(moved, folder)}", file=sys.stderr)
    options = MergeOptions(device=args.device, out_shard_size=args.out_shard_size, seed=args.seed,
                           force=args.force, smoke=not args.no_smoke)
    models = recipe.referenced_models() + [recipe.tokenizer_source or (recipe.tokenizer or {}).get("source")]
    models = [m for m in models if isinstance(m, str) and m not in ("base", "union")]
    if args.dry_run:  # models still on the Hub are planned from their headers, and said what would download
        with planned_from_headers(models, recipe.base_model, args.allow_download) as hub_lines:
            plan = plan_merge(recipe, args.out_dir, options)
            try:
                print("\n".join([describe_plan(plan)] + hub_lines))
            finally:
                plan.close()
        return EXIT_OK
    fetch_missing(models, args.allow_download, progress=not args.no_progress, base=recipe.base_model)
    if options.smoke:
        quiet_transformers()  # the smoke check loads the output and its inputs
    result = drive_recorded(lambda cancel: merge(recipe, args.out_dir, options, cancel=cancel),
                            _recorder(recipe, args), progress=not args.no_progress)
    print(f"Wrote {result.out_dir}: {result.tensors} tensors, {format_bytes(result.bytes_written, 2)} in "
          f"{result.shards} shard(s), {result.seconds:.1f} s, peak memory {format_bytes(result.peak_bytes, 2)} (this merge's own).")
    if smoke_line(result.smoke):
        print(smoke_line(result.smoke))
    return EXIT_OK


def _recorder(recipe, args):
    history = open_history()
    if history is None:
        return None

    def record(result, status, seconds):
        from fusion_gui.engine.merge.recipe import dump_recipe
        from fusion_gui.session.run_records import record_merge

        record_merge(history, dump_recipe(recipe), recipe.referenced_models(), recipe.base_model,
                     str(args.out_dir), result, status, seconds)
        history.close()
    return record


def describe_plan(plan) -> str:
    s = plan.summary
    files = "model.safetensors" if s.shards == 1 else (
        f"model-00001-of-{s.shards:05d}.safetensors ... + model.safetensors.index.json")
    lines = [
        "Dry run: nothing is written.",
        f"  method:          {s.method}",
        f"  models:          {', '.join(s.models)}",
        f"  base model:      {s.base_model or '-'}",
        f"  output:          {s.out_dir}",
        f"  tensors:         {s.tensors} ({s.num_layers} layers)",
        f"  output size:     {format_bytes(s.output_bytes, 2)} in {s.shards} shard(s) of at most "
        f"{format_bytes(plan.shard_bytes, 2)}, dtype {s.out_dtype}",
        f"  device:          {s.device}",
        f"  largest tensor:  {s.largest_tensor}",
        f"  est. peak memory: {format_bytes(s.estimated_peak_bytes, 2)} (the merge's own, besides Python and torch)",
        "  files:           config.json, generation_config.json, tokenizer files, README.md, "
        "mergekit_config.yml, " + files,
    ]
    lines += [f"  note: {n}" for n in s.notes]
    lines += [f"  warning: {w}" for w in s.warnings]
    if s.partial_folders:
        from fusion_gui.engine.io.partial import describe

        lines += [f"  partial folder: {describe(p)}" for p in s.partial_folders]
        if any(p.state == "gone" for p in s.partial_folders):
            lines.append("  (the merge removes the partial folders whose job no longer runs)")
    return "\n".join(lines)
