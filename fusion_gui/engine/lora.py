"""Extract a LoRA adapter from a fine-tune: a truncated SVD of each weight's change from its base.

For every 2-D Linear-like weight W that the fine-tune changed, dW = W_ft - W_base is factored
as U S Vh and cut to rank R (fewer where singular values fall below threshold * sigma_max);
A = sqrt(S) Vh and B = U sqrt(S), so B @ A is the best rank-R approximation of dW. The adapter is
saved in PEFT's layout with lora_alpha = r (scale 1), so `peft.PeftModel.from_pretrained(base,
out_dir)` loads it, and fusion-gui can use the folder as a model in any recipe.

Modules are read and factored one at a time; only the small A and B factors are kept until the
end, when they are written to a temp folder that is renamed into place. The singular values the
SVDs give also say which rank would keep 90% of the change's energy (LoraResult.rank_for_90), so a
rank far too low can be named.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Generator

import torch

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError, OutputError
from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.io.resolve import is_local_path
from fusion_gui.engine.io.partial import claim, publish, sweep_partials, temp_dir_for
from fusion_gui.engine.io.writer import disk_error
from fusion_gui.engine.merge.output import TOKENIZER_FILES, refuse_input_overlap
from fusion_gui.engine.merge.plan import pick_device
from fusion_gui.engine.naming import is_embedding_or_head, module_of
from fusion_gui.events import Event, Log, LoraModuleError, LoraResult, Progress

_FAN_IN_FAN_OUT = ("gpt2",)  # model types whose Linear layers are Conv1D, storing W as (in, out)
LOWRANK_MIN_DIM = 1024  # from this size on, a randomized SVD (svd_lowrank) when the rank is small
ENERGY_TO_KEEP = 0.9  # the share of ‖ΔW‖² a suggested rank keeps


def low_rank_factors(delta: torch.Tensor, rank: int, threshold: float | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A) with B @ A the best rank-`rank` approximation of delta (fewer with a threshold)."""
    b, a, _ = factors_and_spectrum(delta, rank, threshold)
    return b, a


def factors_and_spectrum(delta: torch.Tensor, rank: int, threshold: float | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, A, singular values): the values are all of delta's, or its largest rank + 16 where a
    randomized SVD ran."""
    delta = delta.float()
    small = min(delta.shape)
    rank = min(rank, small)
    if small >= LOWRANK_MIN_DIM and rank * 4 < small:
        u, s, v = torch.svd_lowrank(delta, q=min(small, rank + 16), niter=6)
        vh = v.T
    else:
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    if threshold is not None and s.numel() and s[0] > 0:
        rank = min(rank, int((s >= threshold * s[0]).sum()))
    rank = max(1, rank)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).contiguous(), (root[:, None] * vh[:rank]).contiguous(), s


def rank_for_energy(spectra: list[tuple[torch.Tensor, float]], fraction: float = ENERGY_TO_KEEP) -> int | None:
    """The smallest rank that, given to every module, keeps `fraction` of the modules' summed energy.

    `spectra` holds each module's singular values and its ‖ΔW‖². Where only the largest values are
    known (a randomized SVD), the rest count as lost, so the answer errs high; None when the known
    values do not reach the fraction at any rank."""
    total = sum(energy for _, energy in spectra)
    if not spectra or total <= 0:
        return None
    longest = max(s.numel() for s, _ in spectra)
    kept = torch.zeros(longest, dtype=torch.float64)
    for s, _ in spectra:
        if s.numel():
            cumulative = (s.double() ** 2).cumsum(0)
            kept[: s.numel()] += cumulative
            kept[s.numel():] += cumulative[-1]  # a module with fewer values keeps all it has
    reached = torch.nonzero(kept >= fraction * total)
    return int(reached[0]) + 1 if reached.numel() else None


def extract_lora(finetune: str, base: str, out_dir: str | Path, rank: int, threshold: float | None = None,
                 cancel: CancelToken | None = None, force: bool = False, device: str = "cpu"
                 ) -> Generator[Event, None, LoraResult]:
    """Yields Log, LoraModuleError and Progress per module; returns a LoraResult.

    The SVDs run on `device` (auto, cpu, cuda or mps); the factors come back to the CPU."""
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InputError(f"The LoRA rank must be a whole number of at least 1, not {rank!r}.")
    if threshold is not None and not (0 <= threshold < 1):
        raise InputError(f"The singular-value threshold must be at least 0 and below 1, not {threshold!r}.")
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not force:
        raise InputError(f"Output folder '{out_dir}' already exists; choose another or pass --force.")
    if not out_dir.parent.is_dir():
        raise InputError(f"The folder '{out_dir.parent}' for the output does not exist.")
    compute = pick_device(device)
    ft = open_model(finetune)
    try:
        bm = open_model(base)
    except BaseException:
        ft.close()
        raise
    temp = temp_dir_for(out_dir)
    factors: dict[str, torch.Tensor] = {}
    try:
        refuse_input_overlap(out_dir, {f"fine-tune {ft.label}": ft.path, f"base {bm.label}": bm.path})
        missing = next((n for n in ft.tensors if n not in bm.tensors), None)
        if missing is not None:
            raise InputError(f"The base model '{bm.label}' has no tensor '{missing}', which the "
                             f"fine-tune '{ft.label}' has; is it the right base?")
        missing = next((n for n in bm.tensors if n not in ft.tensors), None)
        if missing is not None:
            raise InputError(f"The fine-tune '{ft.label}' has no tensor '{missing}', which the base "
                             f"'{bm.label}' has; is it the right base?")
        for name, info in ft.tensors.items():
            if tuple(info.shape) != tuple(bm.tensors[name].shape):
                raise InputError(f"Tensor '{name}' is {tuple(info.shape)} in the fine-tune '{ft.label}' "
                                 f"but {tuple(bm.tensors[name].shape)} in the base '{bm.label}'.")
        candidates = [n for n, i in ft.tensors.items() if n.endswith(".weight") and len(i.shape) == 2
                      and i.dtype.is_floating_point and not is_embedding_or_head(n)]
        others = [n for n, i in ft.tensors.items() if n not in set(candidates) and i.dtype.is_floating_point]
        model_type = str((bm.config or {}).get("model_type", ""))
        fan_in_fan_out = model_type in _FAN_IN_FAN_OUT
        total = sum(ft.tensors[n].nbytes for n in candidates + others)
        yield Log(f"Extracting a rank-{rank} LoRA from {ft.label} against {bm.label}: "
                  f"{len(candidates)} candidate modules, on {compute}.")
        modules: list[LoraModuleError] = []
        ranks: dict[str, int] = {}
        spectra: list[tuple[torch.Tensor, float]] = []
        done_bytes = 0
        for i, name in enumerate(candidates):
            cancel.raise_if_cancelled()
            w_ft, w_base = ft.get(name), bm.get(name)
            delta = w_ft.to(compute).float() - w_base.to(compute).float()
            del w_base
            norm = torch.linalg.matrix_norm(delta).item()
            done_bytes += ft.tensors[name].nbytes
            if norm > 0 and math.isfinite(norm):
                if fan_in_fan_out:
                    delta = delta.T  # Conv1D: the update in (out, in) form
                b, a, singular = factors_and_spectrum(delta, rank, threshold)
                spectra.append((singular.to("cpu"), norm * norm))
                error = torch.linalg.matrix_norm(delta - b @ a).item() / norm
                module = module_of(name)
                key = f"base_model.model.{module}"
                dtype = w_ft.dtype
                factors[f"{key}.lora_A.weight"] = a.to(device="cpu", dtype=dtype)
                factors[f"{key}.lora_B.weight"] = b.to(device="cpu", dtype=dtype)
                ranks[module] = a.shape[0]
                modules.append(LoraModuleError(name, a.shape[0], error))
                yield modules[-1]
                del a, b
            elif not math.isfinite(norm):
                raise InputError(f"Tensor '{name}' of '{ft.label}' or '{bm.label}' holds NaN or "
                                 f"infinite values.")
            del delta, w_ft
            yield Progress(i + 1, len(candidates) + len(others), done_bytes, total,
                           time.perf_counter() - start, name)
        skipped = []
        for j, name in enumerate(others):  # what the adapter cannot carry: say so, do not drop silently
            cancel.raise_if_cancelled()
            if not torch.equal(ft.get(name), bm.get(name)):
                skipped.append(name)
            done_bytes += ft.tensors[name].nbytes
            yield Progress(len(candidates) + j + 1, len(candidates) + len(others), done_bytes, total,
                           time.perf_counter() - start, name)
        if skipped:
            yield Log(f"{len(skipped)} changed tensors are not Linear weights and are not in the adapter "
                      f"(e.g. '{skipped[0]}').", "warning")
        if not modules:
            raise InputError(f"The fine-tune '{ft.label}' does not change any Linear weight of "
                             f"'{bm.label}'; there is no LoRA to extract.")
        cancel.raise_if_cancelled()
        base_ref = str(bm.path) if is_local_path(base) else str(base).strip()
        config = _adapter_config(base_ref, rank, ranks, fan_in_fan_out, bm.config)
        yield from sweep_partials(out_dir.parent)  # a killed job's leftovers, never a running one's
        written = _write(temp, factors, config, ft)
        publish(temp, out_dir, force)
        result = LoraResult(str(out_dir), tuple(modules), tuple(skipped), written, time.perf_counter() - start,
                            rank_for_energy(spectra))
        yield Log(f"Wrote {out_dir}: {len(modules)} modules, mean relative error "
                  f"{result.mean_rel_error:.3g}, max {result.max_rel_error:.3g}.")
        return result
    except Exception as err:  # noqa: BLE001 - safetensors reports a full disk as its own error type
        needed = sum(t.numel() * t.element_size() for t in factors.values())
        refused = disk_error(out_dir.parent, err, needed, advice="choose another folder or disk")
        if refused is not None:
            raise refused from err
        if isinstance(err, OSError):
            raise OutputError(f"Writing the adapter failed: {err.strerror or err} ({err.filename or temp}).") from err
        raise
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
        ft.close()
        bm.close()


def _adapter_config(base_ref: str, rank: int, ranks: dict[str, int], fan_in_fan_out: bool,
                    base_config: dict | None) -> dict:
    r = max(ranks.values())
    # Module names as patterns: peft matches them against the end of each module's name.
    pattern = {m: k for m, k in ranks.items() if k != r}
    archs = (base_config or {}).get("architectures") or []
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM" if any(str(a).endswith("ForCausalLM") for a in archs) else None,
        "base_model_name_or_path": base_ref,
        "r": r,
        "lora_alpha": r,  # alpha = r: scale 1, so B @ A is the update itself
        "rank_pattern": pattern,
        "alpha_pattern": dict(pattern),
        "target_modules": sorted(ranks),
        "lora_dropout": 0.0,
        "fan_in_fan_out": fan_in_fan_out,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "init_lora_weights": True,
        "inference_mode": True,
        "revision": None,
    }


def _write(temp: Path, factors: dict[str, torch.Tensor], config: dict, ft) -> int:
    from safetensors.torch import save_file

    claim(temp, "LoRA extraction")
    save_file(factors, str(temp / "adapter_model.safetensors"), metadata={"format": "pt"})
    (temp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    if ft.path.is_dir():  # the fine-tune's tokenizer, so the adapter folder is a usable model
        for name in TOKENIZER_FILES:
            if (ft.path / name).is_file():
                shutil.copy2(ft.path / name, temp / name)
    return (temp / "adapter_model.safetensors").stat().st_size
