"""`fusion-gui push OUT_DIR org/name [--private] [--revision B]`: publish an output folder to the Hub."""

from __future__ import annotations

from fusion_gui.cli.drive import EXIT_OK, drive


def add_parser(sub) -> None:
    p = sub.add_parser("push", help="publish an output folder (merge, distillation, LoRA) to the Hugging Face Hub")
    p.add_argument("out_dir", help="the output folder to publish")
    p.add_argument("repo_id", help="the model repo, org/name (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private (if it does not exist yet)")
    p.add_argument("--revision", default=None, help="the branch to commit to (created if missing; default main)")
    p.add_argument("--license", default=None, help="the license to write into the model card, e.g. apache-2.0")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")


def run(args) -> int:
    from fusion_gui.engine.hub.upload import publish

    url = drive(lambda cancel: publish(args.out_dir, args.repo_id, private=args.private, revision=args.revision,
                                       cancel=cancel, license=args.license), progress=not args.no_progress)
    print(f"Published {args.out_dir} to {url}" + (f" (branch {args.revision})." if args.revision else "."))
    return EXIT_OK
