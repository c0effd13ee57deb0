"""Built-in demo models: a tiny base language model and two fine-tunes with easily scored skills.

Everything is trained here on the CPU, with fixed seeds and a fixed thread count, so every build on
one machine writes the same bytes (another CPU's vector instructions round differently, so its bytes
and scores differ a little; each fine-tune trains until it has learned its skill, see DemoSpec). Skill "count" adds one to each digit, counting on ("4192>5203"); skill
"reverse" reverses a short word ("abcd<dcba"). The base is pretrained on a mix of generic
character text in both alphabets (digits and letters, plus copying) so the fine-tunes start from
a shared model and their changes stay small: that is what makes merging them meaningful.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fusion_gui.engine.errors import OutputError
from fusion_gui.engine.io.writer import disk_error
from fusion_gui.events import Log, StepProgress

DEMO_VERSION = 2  # bump when the training code changes what a build writes (the cache's version)
SKILLS = ("count", "reverse")
# the character vocabulary of synthetic_models.write_tiny_tokenizer: 3 specials, then printable ASCII
_SPECIALS = ("<unk>", "<s>", "</s>")
VOCAB = len(_SPECIALS) + 95
EOS = 2
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class DemoSpec:
    """Size and training schedule; the default is what `fusion-gui demo` and the app build."""

    layers: int = 2
    hidden: int = 64
    pretrain_steps: int = 2000
    finetune_steps: int = 400
    batch: int = 32
    skill_mix: float = 0.1  # share of each skill in the pretraining text: the base has seen a little
    lr: float = 3e-3
    finetune_lr: float = 1e-3
    seed: int = 0
    # A fine-tune that gets fewer than `learned` of unseen training problems right trains on, for at most
    # `extra_rounds` rounds of half the steps at half the rate: how well a fine-tune learns from one base
    # varies from CPU to CPU (measured on one CPU: reverse 72% after 400 steps from the seed-0 base, 97% and
    # 100% from seeds 1 and 2), and a fine-tune that has not learned its skill makes a poor demo.
    learned: float = 0.9
    extra_rounds: int = 2


@dataclass(frozen=True)
class DemoModels:
    base: Path
    count: Path
    reverse: Path
    built: bool  # False when an existing build was reused
    seconds: float

    @property
    def paths(self) -> list[Path]:
        return [self.base, self.count, self.reverse]


def data_root() -> Path:
    """The app's data folder; FUSION_GUI_DATA_DIR overrides it (tests point it at a tmp dir)."""
    env = os.environ.get("FUSION_GUI_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("fusion-gui"))


def demo_root(root: Path | None = None) -> Path:
    return Path(root) if root is not None else data_root() / "demo-models"


def encode(text: str) -> list[int]:
    return [ord(c) - 32 + len(_SPECIALS) for c in text]


# ---- the two skills ---------------------------------------------------------------------------

def _held_out(key: str) -> bool:
    """A fixed fifth of all problems is never trained on (stable across runs: no hash())."""
    return sum(key.encode()) * 2654435761 % 5 == 0


def _count_problem(rng: random.Random) -> tuple[str, str]:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 5)))
    return digits + ">", "".join(str((int(d) + 1) % 10) for d in digits)


def _reverse_problem(rng: random.Random) -> tuple[str, str]:
    word = "".join(rng.choice(_LETTERS) for _ in range(rng.randint(3, 5)))
    return word + "<", word[::-1]


_PROBLEMS = {"count": _count_problem, "reverse": _reverse_problem}


def skill_examples(skill: str, split: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n distinct (prompt, answer) pairs of a skill, from the "train" or the held-out "eval" split."""
    if skill not in _PROBLEMS:
        raise ValueError(f"unknown demo skill {skill!r}; known: {', '.join(SKILLS)}")
    rng, seen, out = random.Random(f"{skill}-{split}-{seed}"), set(), []
    for _ in range(n * 200):
        prompt, answer = _PROBLEMS[skill](rng)
        if prompt in seen or _held_out(prompt) != (split == "eval"):
            continue
        seen.add(prompt)
        out.append((prompt, answer))
        if len(out) == n:
            break
    return out


def _generic_text(rng: random.Random) -> tuple[str, str]:
    """Pretraining text: digits and letters in both layouts, copied, so the base knows the alphabet
    and the format but neither skill (the answer is the prompt's content, not its continuation)."""
    if rng.random() < 0.5:
        body = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 5)))
    else:
        body = "".join(rng.choice(_LETTERS) for _ in range(rng.randint(3, 5)))
    return body + rng.choice("><"), body


# ---- training -----------------------------------------------------------------------------------

def _batch(pairs: list[tuple[str, str]], answer_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [(encode(p), encode(a) + [EOS]) for p, a in pairs]
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), EOS, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (p, a) in enumerate(rows):
        ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        first = len(p) if answer_only else 1  # fine-tunes learn the answer only; pretraining all of it
        labels[i, first: len(p) + len(a)] = ids[i, first: len(p) + len(a)]
    return ids, labels


def _train(model, make_pairs, steps: int, lr: float, answer_only: bool, stage: str, cancel=None):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * (1 - s / steps))
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        if cancel is not None:
            cancel.raise_if_cancelled()
        ids, labels = _batch(make_pairs(), answer_only)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 10 == 9 or step == steps - 1:
            yield StepProgress(stage, step + 1, steps, time.perf_counter() - start, loss=float(loss.detach()))
    model.eval()


def _config(spec: DemoSpec):
    import transformers

    return transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=spec.hidden, intermediate_size=spec.hidden * 4,
        num_hidden_layers=spec.layers, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=64, tie_word_embeddings=False, bos_token_id=1, eos_token_id=EOS,
        pad_token_id=EOS,
    )


def _pretrain_pairs(spec: DemoSpec, rng: random.Random):
    pools = {skill: skill_examples(skill, "train", 2000, spec.seed) for skill in SKILLS}

    def one() -> tuple[str, str]:
        x = rng.random()
        for i, skill in enumerate(SKILLS):
            if x < spec.skill_mix * (i + 1):
                return rng.choice(pools[skill])
        return _generic_text(rng)

    return lambda: [one() for _ in range(spec.batch)]


def _stamp(spec: DemoSpec) -> dict:
    """What a build depends on; any change means a rebuild. Not a hash of this file: a packaged app
    has no source files. Bump DEMO_VERSION whenever the training code changes what it writes."""
    import transformers

    from fusion_gui import __version__

    return {"version": DEMO_VERSION, "app": __version__, "spec": asdict(spec), "torch": torch.__version__,
            "transformers": transformers.__version__}


def _existing(root: Path, spec: DemoSpec) -> DemoModels | None:
    try:
        stamp = json.loads((root / "demo.json").read_text())
    except (OSError, ValueError):
        return None
    paths = [root / name for name in ("base", *SKILLS)]
    if stamp != _stamp(spec) or not all((p / "config.json").exists() for p in paths):
        return None
    return DemoModels(*paths, built=False, seconds=0.0)


def build_demo(root: Path | None = None, spec: DemoSpec = DemoSpec(), force: bool = False, cancel=None):
    """Generator: build (or reuse) the demo models under root; yields Log and StepProgress,
    returns DemoModels. Folders: base/, count/, reverse/ (ordinary HF folders) and demo.json."""
    import shutil

    import transformers

    root = demo_root(root)
    if not force and (found := _existing(root, spec)) is not None:
        yield Log(f"Reusing the demo models in {root}.")
        return found
    yield Log(f"Building the demo models in {root} (about a minute on a CPU) ...")
    start = time.perf_counter()
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    # one thread: the same reduction order on every run (the same bytes on this CPU), and for matrices this
    # small it is also the fastest: measured 15 ms a step against 130 ms with two threads on a busy CPU
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    tmp = root.parent / f".{root.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        torch.manual_seed(spec.seed)
        base = transformers.AutoModelForCausalLM.from_config(_config(spec))
        yield from _train(base, _pretrain_pairs(spec, random.Random(spec.seed)), spec.pretrain_steps,
                          spec.lr, answer_only=False, stage="pretrain base", cancel=cancel)
        _save(base, tmp / "base")
        for skill in SKILLS:
            model = transformers.AutoModelForCausalLM.from_pretrained(tmp / "base")
            pool, rng = skill_examples(skill, "train", 2000, spec.seed), random.Random(f"ft-{skill}")
            yield from _train(model, lambda: rng.sample(pool, spec.batch), spec.finetune_steps,
                              spec.finetune_lr, answer_only=True, stage=f"fine-tune {skill}", cancel=cancel)
            unseen = skill_examples(skill, "train", 2100, spec.seed)[2000:]  # not trained on, not the eval split
            for _ in range(spec.extra_rounds):
                score = _accuracy(model, unseen)
                if score >= spec.learned:
                    break
                yield Log(f"The {skill} fine-tune gets {score:.0%} of unseen problems right; training on.")
                yield from _train(model, lambda: rng.sample(pool, spec.batch), max(1, spec.finetune_steps // 2),
                                  spec.finetune_lr / 2, answer_only=True, stage=f"fine-tune {skill}", cancel=cancel)
            _save(model, tmp / skill)
        (tmp / "demo.json").write_text(json.dumps(_stamp(spec), indent=1) + "\n")
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(root)
    except OSError as err:  # a full disk, a folder the user may not write
        raise disk_error(root.parent, err, _bytes_on_disk(spec), what="the demo models") or OutputError(
            f"Writing the demo models failed: {err.strerror or err} ({err.filename or tmp}).") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    seconds = time.perf_counter() - start
    yield Log(f"Built the demo models in {seconds:.1f} s.")
    return DemoModels(*(root / n for n in ("base", *SKILLS)), built=True, seconds=seconds)


def _bytes_on_disk(spec: DemoSpec) -> int:
    """The three models' float32 weights: embeddings and head, then 4 h^2 of attention and 12 h^2 of MLP a layer."""
    h = spec.hidden
    return 3 * 4 * (2 * VOCAB * h + spec.layers * 16 * h * h)


@torch.no_grad()
def _accuracy(model, problems: list[tuple[str, str]]) -> float:
    """Share of problems whose greedy answer is exact up to the end-of-sequence token; prompts of one
    length go in one batch, so no padding is needed."""
    by_length: dict[int, list[tuple[str, str]]] = {}
    for prompt, answer in problems:
        by_length.setdefault(len(prompt), []).append((prompt, answer))
    correct = 0
    for length, group in by_length.items():
        ids = torch.tensor([encode(p) for p, _ in group])
        for _ in range(max(len(a) for _, a in group) + 1):
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        for row, (_, answer) in zip(ids[:, length:].tolist(), group):
            want = encode(answer) + [EOS]
            correct += row[: len(want)] == want
    return correct / len(problems)


def _save(model, path: Path) -> None:
    from fusion_gui.engine.synthetic_models import write_tiny_tokenizer

    model.save_pretrained(path)
    model.generation_config.save_pretrained(path)
    write_tiny_tokenizer(path, VOCAB)
