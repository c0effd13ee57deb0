"""`fusion-gui distill CONFIG.yml OUT_DIR`: run a distillation headless with a step progress bar."""

from __future__ import annotations

import dataclasses
import math
import os

from fusion_gui.cli.drive import EXIT_OK, quiet_transformers, smoke_line
from fusion_gui.cli.hub_models import add_download_flag, fetch_missing, local_folder
from fusion_gui.cli.recording import drive_recorded, open_history


def add_parser(sub) -> None:
    d = sub.add_parser("distill", help="distill a teacher into a student as a YAML config says")
    d.add_argument("config", help="distillation config YAML (teacher, student, data, losses, training)")
    d.add_argument("out_dir", help="output folder for the student (must not exist, unless --force)")
    d.add_argument("--resume-from", metavar="CHECKPOINT", default=None,
                   help="continue from a checkpoint-N folder (overrides training.resume_from)")
    d.add_argument("--lora-rank", type=int, metavar="R", default=None,
                   help="train the student as a LoRA of rank R, merged at the end; 0: full fine-tune "
                        "(overrides training.lora_rank)")
    d.add_argument("--lora-alpha", type=float, metavar="A", default=None, help="LoRA alpha (training.lora_alpha)")
    d.add_argument("--loss-chunk", type=int, metavar="N", default=None,
                   help="positions per chunk of the logit losses, so full logits never exist; 0: off "
                        "(training.loss_chunk)")
    d.add_argument("--teacher-cache", metavar="DIR", default=None,
                   help="train from a teacher cache written by capture-teacher (overrides teacher_cache)")
    d.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument("--no-smoke", action="store_true", help="skip the smoke check of the distilled student")
    add_download_flag(d)


def run(args) -> int:
    from fusion_gui.engine.distill import distill, load_config

    config = with_overrides(load_config(args.config), args)
    if getattr(args, "teacher_cache", None):
        from fusion_gui.engine.distill import config_from_dict, config_to_dict

        config = config_from_dict(config_to_dict(config) | {"teacher_cache": args.teacher_cache})  # re-checked
    main_rank = os.environ.get("RANK", "0") == "0"  # under accelerate launch / torchrun: rank 0 reports
    fetch_missing([config.teacher, config.student], args.allow_download, progress=not args.no_progress and main_rank)
    named = config  # the history names the models as the config does; the job reads the folders
    config = dataclasses.replace(config, teacher=local_folder(config.teacher), student=local_folder(config.student))
    quiet_transformers()  # our own progress is enough
    result = drive_recorded(lambda cancel: distill(config, args.out_dir, cancel=cancel, force=args.force,
                                                   smoke=not args.no_smoke),
                            _recorder(named, args) if main_rank else None, progress=not args.no_progress and main_rank)
    if not main_rank:
        return EXIT_OK  # the main process wrote the output and says so
    print(summary(result))
    if smoke_line(result.smoke):
        print(smoke_line(result.smoke))
    if result.checkpoint_dir:
        print(f"Checkpoints kept in {result.checkpoint_dir}.")
    return EXIT_OK


def with_overrides(config, args):
    """The config with the command line's training options in place of the YAML's, validated alike."""
    from fusion_gui.engine.distill import config_from_dict, config_to_dict

    overrides = {key: value for key, value in (("resume_from", args.resume_from), ("lora_rank", args.lora_rank),
                                               ("lora_alpha", args.lora_alpha), ("loss_chunk", args.loss_chunk))
                 if value is not None and value != ""}
    if not overrides:
        return config
    raw = config_to_dict(config)
    return config_from_dict(raw | {"training": raw["training"] | overrides})


def _recorder(config, args):
    history = open_history()
    if history is None:
        return None

    def record(result, status, seconds):
        from fusion_gui.engine.distill import dump_config
        from fusion_gui.session.run_records import record_distill

        record_distill(history, dump_config(config), config.teacher, config.student, str(args.out_dir), result,
                       status, seconds)
        history.close()
    return record


def summary(result) -> str:
    m = result.final_eval
    text = f"Wrote {result.out_dir}: {result.steps} steps in {result.seconds:.1f} s"
    if "kl_teacher" in m:
        text += f"; held-out KL to the teacher {m['kl_teacher']:.4g}"
    if "ce_student" in m and "ce_teacher" in m:
        text += (f", perplexity student {math.exp(min(50.0, m['ce_student'])):.3f} / "
                 f"teacher {math.exp(min(50.0, m['ce_teacher'])):.3f}")
    return text + "."
