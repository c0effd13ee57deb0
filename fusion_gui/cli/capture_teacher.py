"""`fusion-gui capture-teacher CONFIG.yml CACHE_DIR --top-k 64`: run a distill config's teacher once over
its data and keep its top-k log-probabilities, so `fusion-gui distill --teacher-cache CACHE_DIR` trains
with no teacher in memory."""

from __future__ import annotations

from fusion_gui.cli.drive import EXIT_OK, drive, quiet_transformers


def add_parser(sub) -> None:
    c = sub.add_parser("capture-teacher", help="cache a distill config's teacher (top-k log-probabilities)")
    c.add_argument("config", help="distillation config YAML (its teacher, student tokenizer, data and seq_length)")
    c.add_argument("cache_dir", help="folder for the cache (reused when it holds the same capture)")
    c.add_argument("--top-k", type=int, default=64, help="log-probabilities kept per position (default 64)")
    c.add_argument("--force", action="store_true", help="replace CACHE_DIR if it holds something else")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from fusion_gui.engine.distill import load_config
    from fusion_gui.engine.distill.teacher_capture import capture_teacher
    from fusion_gui.engine.io.writer import format_size

    config = load_config(args.config)
    quiet_transformers()
    result = drive(lambda cancel: capture_teacher(config, args.cache_dir, args.top_k, cancel=cancel,
                                                  force=args.force), progress=not args.no_progress)
    if result.reused:
        print(f"{result.cache_dir} already holds this capture ({result.blocks} blocks, top {result.top_k}).")
    else:
        print(f"Wrote {result.cache_dir}: {result.blocks} blocks, top {result.top_k}, "
              f"{format_size(result.bytes_written)} in {result.seconds:.1f} s.")
    print(f"Train from it with: fusion-gui distill {args.config} OUT_DIR --teacher-cache {result.cache_dir}")
    return EXIT_OK
