"""Distillation against TRL's GKD trainer: tokens per second and held-out perplexity, in one run.

Same tiny teacher and student, same packed blocks (each document as the tokenizer encodes it: BOS +
text + EOS), same steps, batch, learning-rate schedule, seed, one CPU thread, forward KL (GKD with
lmbda 0, beta 0). Ours runs end to end through `distill()` (no smoke check); TRL's GKDTrainer gets
the same blocks through a collator. Runs alternate (who goes first
swaps each repeat), and the median of the repeats is reported;
speed is from the median step time of each run.
A last row trains ours on the old packing (no BOS per document) to show what the fix is worth.

    python benchmarks/bench_distill_trl.py [--steps 60] [--repeats 2] [--out benchmarks/results/distill_trl.txt]

Needs the `bench` extra (trl). Writes the table with date, commit and machine.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import report_header, write_report  # noqa: E402
from fusion_gui.engine.distill import config_from_dict, distill  # noqa: E402
from fusion_gui.engine.distill.data import load_blocks  # noqa: E402
from fusion_gui.engine.synthetic_models import build_model, tiny_config  # noqa: E402
from fusion_gui.events import TrainStep  # noqa: E402

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "her sister", "a bird", "the teacher"]
VERBS = ["sees", "likes", "finds", "helps", "follows", "paints", "calls"]
OBJECTS = ["the ball", "a red house", "the river", "some bread", "a small boat", "the garden", "his hat"]
ENDS = [" today.", " at night.", " again.", ".", " in the rain.", " every morning."]


def corpus(lines: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "\n".join(" ".join(rng.choice(p) for p in (SUBJECTS, VERBS, OBJECTS)) + rng.choice(ENDS)
                     + (" and " + rng.choice(SUBJECTS) + " " + rng.choice(VERBS) + " " + rng.choice(OBJECTS) + "."
                        if rng.random() < 0.5 else "") for _ in range(lines)) + "\n"


def bos_tokenizer(path: Path) -> None:
    """Characters as tokens; every input starts with BOS (Llama-style)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"] + [chr(c) for c in range(32, 127)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(path)


def make_models(root: Path, data: Path, seq: int) -> tuple[Path, Path]:
    """A teacher trained on the corpus with cross-entropy (so it has something to teach), and an untrained
    student of half the depth and width."""
    from transformers import AutoTokenizer

    teacher, student = root / "teacher", root / "student"
    t_model = build_model(tiny_config("llama", layers=4, hidden=128, vocab=128), seed=0)
    bos_tokenizer(teacher)
    bos_tokenizer(student)
    tok = AutoTokenizer.from_pretrained(teacher)
    train, _ = load_blocks(data, "text", tok, seq, 0.1, 0)
    opt = torch.optim.AdamW(t_model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        batch = train.blocks[torch.randint(len(train), (8,), generator=gen)]
        loss = t_model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    t_model.save_pretrained(teacher)
    build_model(tiny_config("llama", layers=2, hidden=64, vocab=128), seed=1).save_pretrained(student)
    return teacher, student


@torch.no_grad()
def heldout_perplexity(model, blocks) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(blocks), 8):
        ids, labels = blocks.blocks[i:i + 8], blocks.labels[i:i + 8]
        logits = model(input_ids=ids).logits[:, :-1].float()
        target = labels[:, 1:]
        total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                         ignore_index=-100, reduction="sum"))
        count += int((target != -100).sum())
    return math.exp(total / count)


def run_ours(teacher, student, data, out: Path, args, old_packing: bool = False) -> tuple[float, float]:
    """Tokens per second (step_speed); the student is written to `out`."""
    import fusion_gui.engine.distill.data as data_module

    config = config_from_dict({"teacher": str(teacher), "student": str(student), "data": str(data),
                               "losses": {"forward_kl": 1.0}, "training": {
                                   "max_steps": args.steps, "batch_size": args.batch, "seq_length": args.seq,
                                   "learning_rate": args.lr, "lr_schedule": "cosine", "eval_every": 0,
                                   "seed": 0, "device": "cpu", "loss_chunk": args.loss_chunk}})
    original = data_module.encode_document
    if old_packing:  # the packing before the fix: no special tokens per document, EOS between them
        data_module.encode_document = lambda tok, text: tok(text, add_special_tokens=False)["input_ids"] + [
            tok.eos_token_id]
    times = []
    try:
        gen = distill(config, out, smoke=False)
        try:
            while True:
                event = next(gen)
                if isinstance(event, TrainStep):
                    times.append((time.monotonic(), time.process_time()))
        except StopIteration:
            pass
    finally:
        data_module.encode_document = original
    return step_speed(times, args)


def step_speed(times: list[tuple[float, float]], args) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second of the whole process) of the median step, steps end
    to end, loading and saving excluded. The median holds still while other work slows some steps, and
    CPU time (with one torch thread) hardly changes when other processes share the cores."""
    wall = statistics.median(b[0] - a[0] for a, b in zip(times, times[1:]))
    cpu = statistics.median(b[1] - a[1] for a, b in zip(times, times[1:]))
    return args.batch * args.seq / wall, args.batch * args.seq / cpu


def train_gkd(teacher, student, train, out: Path, args, lmbda: float = 0.0, new_tokens: int = 0):
    """TRL's GKDTrainer on our blocks: (each step's end as (wall, CPU) seconds, the trained model). With
    lmbda > 0 (on-policy) the student writes `new_tokens` after each block's first seq - new_tokens."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    times = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            times.append((time.monotonic(), time.process_time()))

    prompt = args.seq - new_tokens

    def collate(rows):  # on-policy: the same prompts as ours, each block without its last new_tokens tokens
        ids = torch.stack([torch.tensor(r["input_ids"]) for r in rows])
        labels = torch.stack([torch.tensor(r["labels"]) for r in rows])
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
        if new_tokens:
            batch |= {"prompts": ids[:, :prompt], "prompt_attention_mask": torch.ones_like(ids[:, :prompt])}
        return batch

    ds = datasets.Dataset.from_dict({"input_ids": train.blocks.tolist(), "labels": train.labels.tolist()})
    cfg = GKDConfig(output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch,
                    learning_rate=args.lr, lr_scheduler_type="cosine", warmup_steps=0, seed=0, data_seed=0,
                    lmbda=lmbda, beta=0.0, temperature=1.0, max_length=args.seq, use_cpu=True, bf16=False,
                    gradient_checkpointing=False, report_to="none", logging_strategy="no", save_strategy="no",
                    disable_tqdm=True, dataloader_num_workers=0,
                    **({"max_new_tokens": new_tokens} if new_tokens else {}))
    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    t_model = AutoModelForCausalLM.from_pretrained(teacher, dtype=torch.float32)
    trainer = GKDTrainer(model=model, teacher_model=t_model, args=cfg, train_dataset=ds,
                         processing_class=AutoTokenizer.from_pretrained(student), data_collator=collate,
                         callbacks=[Clock()])
    trainer.train()
    return times, trainer.model


def run_trl(teacher, student, train, out: Path, args):
    times, model = train_gkd(teacher, student, train, out, args)
    return step_speed(times, args), model


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--loss-chunk", type=int, default=512)
    p.add_argument("--out", default="benchmarks/results/distill_trl.txt")
    args = p.parse_args()
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "corpus.txt"
        data.write_text(corpus(3000))
        teacher, student = make_models(root, data, args.seq)
        tok = AutoTokenizer.from_pretrained(student)
        train, held = load_blocks(data, "text", tok, args.seq, 0.1, 0)  # the split distill() makes too
        rows = {"ours": [], "trl": []}
        for r in range(args.repeats):  # who goes first alternates: neither gets the warm-up's cost every time
            for who in (("ours", "trl") if r % 2 == 0 else ("trl", "ours")):
                if who == "ours":
                    speed = run_ours(teacher, student, data, root / f"ours{r}", args)
                    model = AutoModelForCausalLM.from_pretrained(root / f"ours{r}")
                else:
                    speed, model = run_trl(teacher, student, train, root / f"trl{r}", args)
                rows[who].append((speed, heldout_perplexity(model, held)))
        speed = run_ours(teacher, student, data, root / "old", args, old_packing=True)
        old = (speed, heldout_perplexity(AutoModelForCausalLM.from_pretrained(root / "old"), held))
        t_ppl = heldout_perplexity(AutoModelForCausalLM.from_pretrained(teacher), held)
        s_ppl = heldout_perplexity(AutoModelForCausalLM.from_pretrained(student), held)
    med = {k: (statistics.median(s[0] for s, _ in v), statistics.median(s[1] for s, _ in v),
               statistics.median(q for _, q in v)) for k, v in rows.items()}
    lines = [
        *report_header("bench_distill_trl.py"),
        f"# {args.steps} steps, batch {args.batch} x {args.seq} tokens, lr {args.lr} cosine, forward KL (GKD lmbda 0, "
        f"beta 0), {len(train)} train / {len(held)} held-out blocks; median of {args.repeats} alternating repeats (first runner swaps)",
        f"# held-out perplexity (inputs start with BOS): teacher {t_ppl:.3f}, student before training {s_ppl:.3f}",
        "",
        "| trainer | tokens/s (wall) | tokens per CPU second | held-out perplexity |",
        "|---|---|---|---|",
        f"| fusion_gui distill | {med['ours'][0]:.0f} | {med['ours'][1]:.0f} | {med['ours'][2]:.3f} |",
        f"| TRL GKDTrainer | {med['trl'][0]:.0f} | {med['trl'][1]:.0f} | {med['trl'][2]:.3f} |",
        f"| fusion_gui, old packing (no BOS per document) | {old[0][0]:.0f} | {old[0][1]:.0f} | {old[1]:.3f} |",
        "",
        f"speed ours / TRL: {med['ours'][0] / med['trl'][0]:.2f}x wall, {med['ours'][1] / med['trl'][1]:.2f}x CPU; "
        f"perplexity ours / TRL: {med['ours'][2] / med['trl'][2]:.3f}",
        "on-policy (lmbda 0.5): not measured here (on-policy distillation is built separately).",
        f"all runs (wall tok/s, CPU tok/s, perplexity): "
        f"{ {k: [f'{s[0]:.0f} {s[1]:.0f} {q:.3f}' for s, q in v] for k, v in rows.items()} }",
        f"# benchmark wall time {time.monotonic() - started:.0f} s",
    ]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
