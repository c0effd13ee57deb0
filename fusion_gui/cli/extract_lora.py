"""`fusion-gui extract-lora FINETUNE BASE OUT --rank R [--threshold T] [--device auto|cpu|cuda|mps]`."""

from __future__ import annotations

from fusion_gui.cli.drive import EXIT_OK, drive


def add_parser(sub) -> None:
    p = sub.add_parser("extract-lora", help="extract a LoRA adapter (PEFT format) from a fine-tune and its base",
                       description="Factor each Linear weight's change (fine-tune minus base) by truncated SVD "
                                   "into a LoRA adapter that peft loads and fusion-gui recipes can use as a model.")
    p.add_argument("finetune", help="the fine-tuned model (folder or cached repo id)")
    p.add_argument("base", help="the model it was fine-tuned from")
    p.add_argument("out_dir", help="adapter folder to write (must not exist, unless --force)")
    p.add_argument("--rank", type=int, required=True, help="LoRA rank per module")
    p.add_argument("--threshold", type=float, default=None,
                   help="keep fewer ranks where singular values fall below THRESHOLD * the largest (0..1)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="where the SVDs run (default: auto, the GPU when there is one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--table", action="store_true", help="print every module's rank and error")


def run(args) -> int:
    from fusion_gui.engine.lora import extract_lora

    result = drive(lambda cancel: extract_lora(args.finetune, args.base, args.out_dir, args.rank, args.threshold,
                                               cancel=cancel, force=args.force, device=args.device),
                   progress=not args.no_progress)
    print(error_table(result, every=args.table))
    print(f"Wrote {result.out_dir}: {result.bytes_written / 1e6:.1f} MB in {result.seconds:.1f} s.")
    return EXIT_OK


def error_table(result, every: bool = False) -> str:
    modules = result.modules
    lines = []
    if every:
        width = max(len(m.name) for m in modules)
        lines.append(f"{'module':<{width}}  rank  rel. error")
        lines += [f"{m.name:<{width}}  {m.rank:>4}  {m.rel_error:.3e}" for m in modules]
    worst = max(modules, key=lambda m: m.rel_error)
    ranks = sorted({m.rank for m in modules})
    rank_text = str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}-{ranks[-1]}"
    lines.append(f"{len(modules)} modules, rank {rank_text}: relative error ||dW - BA|| / ||dW|| "
                 f"mean {result.mean_rel_error:.3e}, max {result.max_rel_error:.3e} ({worst.name}).")
    if result.skipped:
        lines.append(f"{len(result.skipped)} other changed tensors (norms, biases, embeddings) are not in "
                     f"the adapter.")
    return "\n".join(lines)
