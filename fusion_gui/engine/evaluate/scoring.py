"""Check a model at once: perplexity on a text file, demo skill scores, side-by-side generation.

Every job is a generator of events (fusion_gui/events.py): StepProgress while it works, one EvalRow
per score and one Generation per completion, so a table and a text box can fill in live.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from fusion_gui.engine.distill.data import leading_special_tokens
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.resolve import resolve_model_path
from fusion_gui.events import EvalResult, EvalRow, Generation, Log, StepProgress

_BLOCK_CHARS = 16_000  # text read per tokenizer call: a file of any size streams


def load_causal_lm(ref: str | Path, device: str = "cpu"):
    """(model, tokenizer) from a Hugging Face folder or hub cache id; no remote code, no network."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(resolve_model_path(str(ref)))  # the engine's one sentence for a missing model
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError) as err:
        raise InputError(f"Cannot load {ref} as a causal language model with its tokenizer: {err}") from err
    return model.to(_device(device)).eval(), tokenizer


def _device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def model_labels(refs: list[str]) -> list[str]:
    """Short names for table columns: the folder name, made unique with its parent when needed."""
    names = [Path(r).name or str(r) for r in refs]
    return [f"{Path(r).parent.name}/{n}" if names.count(n) > 1 else n for r, n in zip(refs, names)]


# ---- perplexity ---------------------------------------------------------------------------------

def _text_blocks(path: Path):
    """(text, bytes read so far) in blocks of whole lines, so the file is never read at once.
    Cutting at line ends can change a subword tokenizer's split only at the cut, once per block."""
    done, block = 0, []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            block.append(line)
            done += len(line.encode("utf-8"))
            if sum(map(len, block)) >= _BLOCK_CHARS:
                yield "".join(block), done
                block = []
    if block:
        yield "".join(block), done


@torch.no_grad()
def _window_nll(model, windows: list[list[int]]) -> tuple[float, int]:
    """Summed negative log-likelihood of every token after the first of each window, and the count."""
    device = next(model.parameters()).device
    ids = torch.tensor(windows, device=device)
    logits = model(input_ids=ids).logits.float()
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                            ids[:, 1:].reshape(-1), reduction="sum")
    return float(nll), ids.shape[0] * (ids.shape[1] - 1)


def perplexity(ref: str | Path, text_file: str | Path, *, context: int = 256, batch_size: int = 8,
               device: str = "cpu", label: str | None = None, cancel=None, loaded=None):
    """Generator: perplexity of a model on a text file. The token stream is cut into consecutive
    windows of `context` tokens (the last one may be shorter), each scored on its own."""
    path = Path(text_file)
    if not path.is_file():
        raise InputError(f"No such text file: {path}")
    model, tokenizer = loaded or load_causal_lm(ref, device)
    label = label or model_labels([str(ref)])[0]
    limit = getattr(model.config, "max_position_embeddings", None) or context
    context = min(context, limit)
    total_bytes, start = max(1, path.stat().st_size), time.perf_counter()
    # the file is one input: it starts as the tokenizer starts one (a BOS where it adds one)
    stream: list[int] = leading_special_tokens(tokenizer)
    nll, count = 0.0, 0
    for text, done in _text_blocks(path):
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        while len(stream) >= context * batch_size:
            windows = [stream[i * context:(i + 1) * context] for i in range(batch_size)]
            del stream[: context * batch_size]
            part, n = _window_nll(model, windows)
            nll, count = nll + part, count + n
            if cancel is not None:
                cancel.raise_if_cancelled()
        yield StepProgress(f"perplexity: {label}", done, total_bytes, time.perf_counter() - start)
    full = len(stream) // context
    if full:
        part, n = _window_nll(model, [stream[i * context:(i + 1) * context] for i in range(full)])
        nll, count = nll + part, count + n
    if len(stream) - full * context >= 2:
        part, n = _window_nll(model, [stream[full * context:]])
        nll, count = nll + part, count + n
    if count == 0:
        raise InputError(f"{path} has fewer than two tokens: there is nothing to score.")
    # bytes counted from decoded lines can fall short of the file size (CRLF, invalid UTF-8)
    yield StepProgress(f"perplexity: {label}", total_bytes, total_bytes, time.perf_counter() - start)
    row = EvalRow(label, "perplexity", math.exp(nll / count), count)
    yield row
    return row


# ---- demo skills ----------------------------------------------------------------------------------

_GREEDY_ROWS = 256  # prompts completed together: bounds a large model's memory and paces the progress


def _greedy(model, tokenizer, prompts: list[str], max_new_tokens: int, out: list[str], cancel=None):
    """Greedy completions into `out`, left-padded batches of prompts (engine/evaluate/greedy.py);
    yields how many prompts are done after each batch."""
    from fusion_gui.engine.evaluate.greedy import encode_prompts, greedy_ids

    pad = _pad_id(model, tokenizer)
    for start in range(0, len(prompts), _GREEDY_ROWS):
        part = prompts[start:start + _GREEDY_ROWS]
        rows = greedy_ids(model, encode_prompts(tokenizer, part, pad), max_new_tokens, cancel)
        out[start:start + len(part)] = [_decode(tokenizer, row) for row in rows]
        yield start + len(part)


def _pad_id(model, tokenizer) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, model.config.eos_token_id, 0):
        if isinstance(value, int):
            return value
    return 0


def _decode(tokenizer, ids: list[int]) -> str:
    """Text up to the first end-of-sequence token; a tokenizer without a decoder (the character
    tokenizer of the demo) is joined without the spaces transformers would put between tokens."""
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.decoder is None:
        return "".join(t for t in tokenizer.convert_ids_to_tokens(ids) if t not in tokenizer.all_special_tokens)
    return tokenizer.decode(ids, skip_special_tokens=True)


def skill_score(ref: str | Path, skill: str, *, n: int = 60, device: str = "cpu", label: str | None = None,
                cancel=None, loaded=None):
    """Generator: exact-match accuracy of greedy completions on n held-out problems of a demo skill."""
    from fusion_gui.engine.evaluate.demo import SKILLS, skill_examples

    if skill not in SKILLS:
        raise InputError(f"Unknown task {skill!r}; the tasks are: {', '.join(SKILLS)}.")
    model, tokenizer = loaded or load_causal_lm(ref, device)
    label = label or model_labels([str(ref)])[0]
    problems = skill_examples(skill, "eval", n)
    start, answers = time.perf_counter(), [""] * len(problems)
    longest = max(len(a) for _, a in problems) + 1  # room for the end-of-sequence token
    for done in _greedy(model, tokenizer, [p for p, _ in problems], longest, answers, cancel):
        if cancel is not None:
            cancel.raise_if_cancelled()
        yield StepProgress(f"{skill}: {label}", done, len(problems), time.perf_counter() - start)
    correct = sum(got.strip() == want for got, (_, want) in zip(answers, problems))
    row = EvalRow(label, skill, correct / len(problems), len(problems))
    yield row
    return row


# ---- side by side ----------------------------------------------------------------------------------

@torch.no_grad()
def generate(ref: str | Path, prompt: str, *, max_new_tokens: int = 40, seed: int = 0,
             temperature: float = 0.8, device: str = "cpu", label: str | None = None, loaded=None):
    """Generator: one model's greedy and sampled completions of a prompt (sampling seeded: repeatable)."""
    model, tokenizer = loaded or load_causal_lm(ref, device)
    label = label or model_labels([str(ref)])[0]
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]],
                       device=next(model.parameters()).device)
    if ids.shape[1] == 0:
        raise InputError("The prompt is empty.")
    results = []
    for mode in ("greedy", "sampled"):
        torch.manual_seed(seed)
        extra = ({"do_sample": True, "temperature": temperature, "top_k": 0} if mode == "sampled"
                 else {"do_sample": False})
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             pad_token_id=_pad_id(model, tokenizer), **extra)
        results.append(Generation(label, prompt, mode, _decode(tokenizer, out[0, ids.shape[1]:].tolist())))
        yield results[-1]
    return tuple(results)


def evaluate(refs: list[str | Path], *, text_file: str | Path | None = None, tasks: tuple[str, ...] = (),
             prompt: str | None = None, n: int = 60, device: str = "cpu", seed: int = 0, cancel=None):
    """Generator: every asked-for score of every model (each model loaded once); returns EvalResult.
    Every model completes `prompt` (greedy and sampled): how many fit side by side is the view's concern."""
    if not refs:
        raise InputError("Name at least one model to evaluate.")
    from fusion_gui.engine.evaluate.demo import SKILLS

    # check the cheap things before loading any model
    unknown = [t for t in tasks if t not in SKILLS]
    if unknown:
        raise InputError(f"Unknown task {unknown[0]!r}; the tasks are: {', '.join(SKILLS)}.")
    if text_file is not None and not Path(text_file).is_file():
        raise InputError(f"No such text file: {text_file}")
    for ref in refs:
        resolve_model_path(str(ref))  # a missing model fails now, not after the others were scored
    start = time.perf_counter()
    rows, generations = [], []
    for ref, label in zip(refs, model_labels([str(r) for r in refs])):
        yield Log(f"Evaluating {label} ...")
        loaded = load_causal_lm(ref, device)
        jobs = []
        if text_file is not None:
            jobs.append(perplexity(ref, text_file, device=device, label=label, cancel=cancel, loaded=loaded))
        jobs += [skill_score(ref, t, n=n, device=device, label=label, cancel=cancel, loaded=loaded) for t in tasks]
        if prompt is not None:
            jobs.append(generate(ref, prompt, seed=seed, device=device, label=label, loaded=loaded))
        for job in jobs:
            for event in job:
                if isinstance(event, EvalRow):
                    rows.append(event)
                elif isinstance(event, Generation):
                    generations.append(event)
                yield event
            if cancel is not None:
                cancel.raise_if_cancelled()
    return EvalResult(tuple(rows), tuple(generations), time.perf_counter() - start)
