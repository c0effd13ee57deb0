"""Smoke check: does a freshly written model work at all? Seconds on a CPU for small models.

Checks, cheapest first: the tokenizer loads and round-trips text; every token id it can emit has an
embedding row; config.json agrees with the tensors; no tensor holds NaN or Inf (streamed one tensor
at a time); perplexity on a short built-in text against each input's; a few greedy generations,
flagging degenerate repetition. The verdict is the worst status: ok, suspicious or broken, with
the reasons. A merge much worse than every one of its inputs is suspicious; far worse is broken.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Generator, Sequence
from pathlib import Path

import torch

from fusion_gui.engine.evaluate import smoke_files as files
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.events import Event, Log, SmokeCheck, SmokeVerdict

# Plain ASCII on one line, so even the tests' character tokenizer covers every character.
SMOKE_TEXT = (
    "The river runs past the old mill and under the stone bridge before it reaches the town. In the "
    "morning the baker opens his shop, the children walk to school and the market fills with people "
    "who buy bread, apples and fish. When the sun is high the streets are quiet, and in the evening "
    "the lights come on one by one along the water."
)
PROMPTS = ("The river runs past the", "In the morning the", "When the sun is high")
NEW_TOKENS = 24
SUSPICIOUS_RATIO = 1.5  # perplexity above this many times the worst input's
BROKEN_RATIO = 4.0
_ORDER = {"ok": 0, "skipped": 0, "suspicious": 1, "broken": 2}


def smoke_check(model_dir: str | Path, inputs: Sequence[str | Path] = (), *, device: str = "auto",
                cancel=None) -> Generator[Event, None, SmokeVerdict]:
    """Generator: check the model folder (its inputs, when given, are the yardstick for perplexity
    and repetition); yields a SmokeCheck per check and returns the SmokeVerdict."""
    start, folder, checks = time.perf_counter(), Path(model_dir), []

    def found(check: SmokeCheck) -> SmokeCheck:
        checks.append(check)
        return check

    with ModelReader(str(folder), folder, folder.name) as reader:
        tokenizer_check, tokenizer = files.check_tokenizer(folder)
        yield found(tokenizer_check)
        if tokenizer is not None:
            yield found(files.check_token_ids(tokenizer, reader))
        yield found(files.check_config(reader))
        yield found(files.check_finite(reader, cancel))
    ppl = inputs_ppl = None
    generations: tuple[tuple[str, str], ...] = ()
    device = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    room = _memory_problem(folder, device)
    if room:
        yield found(SmokeCheck("perplexity", "skipped", room))
    elif _ORDER[_worst(checks)] < _ORDER["broken"] and tokenizer is not None:
        try:
            ppl, generations, repeats = _run_model(folder, device)
        except Exception as err:  # noqa: BLE001 - a model that does not load or run is the finding
            yield found(SmokeCheck("perplexity", "broken", f"The model does not load or run: {err}"))
        else:
            inputs_ppl, input_repeats = [], []
            for ref in inputs:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                if _memory_problem(Path(ref), device):
                    continue
                yield Log(f"Smoke check: scoring input {Path(ref).name} for comparison.")
                try:
                    value, _, rep = _run_model(Path(ref), device)
                except Exception:  # noqa: BLE001 - an input that cannot run (a bare weights file) is no yardstick
                    continue
                inputs_ppl.append((Path(ref).name, value))
                input_repeats.append(rep)
            yield found(_judge_perplexity(ppl, inputs_ppl, reader_vocab(folder)))
            yield found(_judge_generations(generations, repeats, input_repeats))
    reasons = tuple(c.detail for c in checks if _ORDER[c.status] > 0)
    return SmokeVerdict(_worst(checks), reasons, tuple(checks), ppl, tuple(inputs_ppl or ()), generations,
                        time.perf_counter() - start)


def check_output(folder: Path, inputs: Sequence[str | Path], device: str = "auto",
                 cancel=None) -> Generator[Event, None, SmokeVerdict]:
    """The merge's and distillation's hook: smoke-check the finished temp folder and add the verdict
    to its model card, so nothing broken is presented as a working model."""
    from fusion_gui.engine.evaluate.model_card import add_smoke_section

    from fusion_gui.engine.errors import Cancelled

    yield Log("Smoke check: does the new model load, read and talk?")
    try:
        verdict = yield from smoke_check(folder, inputs, device=device, cancel=cancel)
    except Cancelled:
        raise
    except Exception as err:  # noqa: BLE001 - a failing check must not lose a finished merge
        reason = f"The smoke check itself failed ({type(err).__name__}: {err})."
        verdict = SmokeVerdict("suspicious", (reason,), (SmokeCheck("smoke check", "suspicious", reason),))
    level = "info" if verdict.verdict == "ok" else "warning"
    yield Log(f"Smoke check: {verdict.verdict}" + (f" ({'; '.join(verdict.reasons)})" if verdict.reasons else "")
              + f" in {verdict.seconds:.1f} s.", level)
    if (folder / "README.md").is_file():
        add_smoke_section(folder / "README.md", verdict)
    return verdict


def reader_vocab(folder: Path) -> int | None:
    with ModelReader(str(folder), folder, folder.name) as reader:
        found = files.embedding_rows(reader)
    return found[1] if found else None


def _memory_problem(folder: Path, device: str) -> str | None:
    """Why the model cannot be loaded to run it (too big for the free memory), or None."""
    import psutil

    try:
        with ModelReader(str(folder), folder, folder.name) as reader:
            need = reader.total_bytes
    except Exception:  # noqa: BLE001 - an unreadable input fails later, where it is reported
        return None
    if device.startswith("cuda"):
        free = torch.cuda.mem_get_info()[0]
    else:
        free = psutil.virtual_memory().available
    if need * 1.3 > free:  # weights plus activations and the allocator's slack
        return (f"The model ({need / 1e9:.1f} GB) does not fit in free memory ({free / 1e9:.1f} GB): "
                f"perplexity and generations were not checked.")
    return None


def _worst(checks: list[SmokeCheck]) -> str:
    worst = max((_ORDER[c.status] for c in checks), default=0)
    return ("ok", "suspicious", "broken")[worst]


def _run_model(folder: Path, device: str) -> tuple[float, tuple[tuple[str, str], ...], int]:
    """(perplexity on SMOKE_TEXT, greedy generations, how many of them repeat degenerately);
    the model is loaded in its saved dtype and freed before returning."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fusion_gui.engine.evaluate.scoring import _decode, _pad_id

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype="auto", local_files_only=True)
    if device == "cpu" and model.dtype == torch.float16:  # half matmuls on a CPU are slow or missing
        model = model.float()
    model = model.to(device).eval()
    try:
        limit = getattr(model.config, "max_position_embeddings", None) or 512
        ids = tokenizer(SMOKE_TEXT, add_special_tokens=False)["input_ids"][:limit]
        with torch.no_grad():
            batch = torch.tensor([ids], device=device)
            loss = model(input_ids=batch, labels=batch).loss
            # all prompts in one left-padded batch: one pass per new token instead of one per prompt and token
            encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
            width, pad = max(map(len, encoded)), _pad_id(model, tokenizer)
            ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)
            mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
            out = model.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False,
                                 pad_token_id=pad)
            completions = [(p, _decode(tokenizer, row[width:].tolist())) for p, row in zip(PROMPTS, out)]
        ppl = math.exp(min(float(loss), 700.0)) if math.isfinite(float(loss)) else math.inf
        return ppl, tuple(completions), sum(is_degenerate(text) for _, text in completions)
    finally:
        del model
        gc.collect()


def is_degenerate(text: str, min_chars: int = 16, max_period: int = 12, share: float = 0.8) -> bool:
    """A completion made of one short piece over and over ("the the the", "!!!!"): some period
    p <= max_period for which share of its characters equal the one p before. English text scores ~0.1."""
    text = text.strip()
    if len(text) < min_chars:
        return False
    for p in range(1, max_period + 1):
        same = sum(text[i] == text[i - p] for i in range(p, len(text)))
        if same >= share * (len(text) - p):
            return True
    return False


def _judge_perplexity(ppl: float, inputs: list[tuple[str, float]], vocab: int | None) -> SmokeCheck:
    if not math.isfinite(ppl):
        return SmokeCheck("perplexity", "broken", "Perplexity on a short text is infinite or NaN.")
    finite = [(n, v) for n, v in inputs if math.isfinite(v)]
    if finite:
        worst_name, worst = max(finite, key=lambda item: item[1])
        listing = ", ".join(f"{n} {v:.3g}" for n, v in finite)
        ratio = ppl / worst
        if ratio > BROKEN_RATIO:
            return SmokeCheck("perplexity", "broken", f"Perplexity {ppl:.3g} is {ratio:.1f} times the worst "
                                                      f"input's ({worst_name} {worst:.3g}).")
        if ratio > SUSPICIOUS_RATIO:
            return SmokeCheck("perplexity", "suspicious", f"Perplexity {ppl:.3g} is {ratio:.1f} times the "
                                                          f"worst input's ({worst_name} {worst:.3g}).")
        return SmokeCheck("perplexity", "ok", f"Perplexity {ppl:.3g} on a short text (inputs: {listing}).")
    if vocab and ppl > 0.5 * vocab:
        return SmokeCheck("perplexity", "suspicious", f"Perplexity {ppl:.3g} is near chance for a vocabulary "
                                                      f"of {vocab}, and no input was there to compare.")
    return SmokeCheck("perplexity", "ok", f"Perplexity {ppl:.3g} on a short text (no input to compare).")


def _judge_generations(generations, repeats: int, input_repeats: list[int]) -> SmokeCheck:
    """Degenerate repetition counts against the merge only where its inputs do not repeat as much."""
    shown = " | ".join(f"{p}{t[:40]!s}" for p, t in generations[:1])
    if repeats >= 2 and (not input_repeats or repeats > max(input_repeats)):
        return SmokeCheck("generation", "suspicious", f"{repeats} of {len(generations)} greedy completions "
                                                      f"repeat one short piece over and over ({shown!r}).")
    if repeats:
        return SmokeCheck("generation", "ok", f"{repeats} of {len(generations)} greedy completions repeat, no "
                                              f"more than the inputs' do ({shown!r}).")
    return SmokeCheck("generation", "ok", f"{len(generations)} greedy completions, none degenerate ({shown!r}).")
