"""The distillation's pre-flight: what the data makes (blocks, tokens, tokens that carry loss) and an
estimate of peak memory (teacher, student, gradients and optimizer, activations, the logits the loss
holds), from configs and tokenizers only, no weights; warned like a merge's when it exceeds free memory.

The estimate describes the job alone. Its factors are counted from what the step holds (see
benchmarks/bench_distill_memory.py for the estimate against measured peaks).
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch

from fusion_gui.formatting import format_bytes

# float32 [positions, vocab] tensors alive at the loss's peak. Full logits: both models' outputs, both
# log-softmaxes, the teacher's probabilities and the gradient; a chunk frees the models' outputs as it
# goes. Fitted to benchmarks/results/distill_memory.txt (measured 5.9 and 3.1 copies).
LOGIT_COPIES_FULL, LOGIT_COPIES_CHUNK = 6, 3
# the Trainer's, accelerate's and the allocator's own share of the job, measured at about 200 MiB
BOOKKEEPING = 200 << 20
# saved activations per layer and position, in hidden widths (attention: norms, q/k/v, outputs,
# residuals) and MLP widths (gate, up, activation, product)
HIDDEN_SAVED, MLP_SAVED = 8, 4


@dataclass(frozen=True)
class DistillMemory:
    teacher: int
    student: int
    optimizer: int  # gradients and AdamW's two moments of what trains
    activations: int  # with the job's bookkeeping
    logits: int  # the loss's logits: all positions at once, or one chunk (and the kept gradients)

    @property
    def total(self) -> int:
        return self.teacher + self.student + self.optimizer + self.activations + self.logits


@dataclass(frozen=True)
class DistillPlan:
    train_blocks: int
    eval_blocks: int
    seq_length: int
    loss_tokens: int  # prediction targets that carry loss, training and held-out blocks together
    memory: DistillMemory
    device: str


@dataclass(frozen=True)
class _Shape:
    params: int
    lora: int  # what a LoRA of the configured rank trains
    layers: int
    hidden: int
    mlp: int


def _shape(path: str, lora_rank: int) -> _Shape:
    from transformers import AutoConfig, AutoModelForCausalLM

    from fusion_gui.engine.distill.lora_student import lora_parameters

    cfg = AutoConfig.from_pretrained(path)
    with torch.device("meta"):  # shapes only: no memory, no weights read
        model = AutoModelForCausalLM.from_config(cfg)
    text = cfg.get_text_config()
    hidden = getattr(text, "hidden_size", None) or getattr(text, "n_embd", 0)
    return _Shape(sum(p.numel() for p in model.parameters()), lora_parameters(model, lora_rank) if lora_rank else 0,
                  getattr(text, "num_hidden_layers", None) or getattr(text, "n_layer", 0), hidden,
                  getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None) or 4 * hidden)


def estimate_memory(config, vocab: int, on_gpu: bool) -> DistillMemory:
    """Peak bytes of one training step, as the trainer runs it (chunked or full logits, LoRA or not)."""
    o = config.training
    half = on_gpu and o.precision != "fp32"
    teacher, student = _shape(config.teacher, 0), _shape(config.student, o.lora_rank)
    positions = o.batch_size * o.seq_length
    act = 2 if half else 4
    trains = student.lora if o.lora_rank else student.params
    activations = (student.layers * positions * (HIDDEN_SAVED * student.hidden + MLP_SAVED * student.mlp) * act
                   + positions * 2 * (teacher.hidden + teacher.mlp) * act)  # the teacher's layer at a time
    chunked = 0 < o.loss_chunk < positions
    logits = (LOGIT_COPIES_CHUNK * o.loss_chunk if chunked else LOGIT_COPIES_FULL * positions) * vocab * 4
    if chunked:  # the kept gradients of the hidden states and (full fine-tune) the output layer
        logits += positions * student.hidden * 4 + (0 if o.lora_rank else vocab * student.hidden * 4)
    teacher_bytes = 0 if config.teacher_cache else teacher.params * (2 if half else 4)  # a cache: never loaded
    return DistillMemory(teacher_bytes, student.params * 4, trains * 4 * 3, activations + BOOKKEEPING, logits)


def plan_distill(config, token=None):
    """Generator for the view's pre-flight (yields nothing): the tokenizers checked, the data packed, the
    memory estimated; returns a DistillPlan. Raises InputError as the job would."""
    from fusion_gui.engine.distill.data import load_blocks
    from fusion_gui.engine.distill.teacher_setup import match_tokenizers

    yield from ()
    o = config.training
    tokenizer, vocab = match_tokenizers(config)  # another vocabulary is aligned, as the job does
    train, held = load_blocks(config.data.path, config.data.text_field, tokenizer, o.seq_length,
                              config.data.eval_fraction, o.seed)
    on_gpu = o.device != "cpu" and torch.cuda.is_available()
    return DistillPlan(len(train), len(held), o.seq_length, train.loss_tokens + held.loss_tokens,
                       estimate_memory(config, vocab, on_gpu), "cuda" if on_gpu else "cpu")


def describe(plan: DistillPlan) -> tuple[str, list[str]]:
    """The pre-flight's text and its warnings (memory beyond what is free)."""
    m = plan.memory
    targets = (plan.train_blocks + plan.eval_blocks) * (plan.seq_length - 1)
    text = (f"{plan.train_blocks} training and {plan.eval_blocks} held-out blocks of {plan.seq_length} tokens; "
            f"{plan.loss_tokens:,} of {targets:,} predicted tokens carry loss. "
            f"Estimated peak memory {format_bytes(m.total)} on {plan.device}: teacher {format_bytes(m.teacher)}, "
            f"student {format_bytes(m.student)}, gradients and optimizer {format_bytes(m.optimizer)}, "
            f"activations {format_bytes(m.activations)}, logits {format_bytes(m.logits)}.")
    warnings = []
    if plan.loss_tokens == 0:
        warnings.append("No token carries loss: the data has no assistant or completion text inside any block.")
    ram = psutil.virtual_memory().available
    if m.total > ram:
        warnings.append(f"The estimated peak memory is more than the {format_bytes(ram)} of free RAM.")
    if plan.device == "cuda":
        free = torch.cuda.mem_get_info()[0]
        if m.total > free:
            warnings.append(f"The estimated peak memory is more than the {format_bytes(free)} of free GPU memory.")
    return text, warnings


def plan_summary(config, train_ds, eval_ds, vocab: int, on_gpu: bool) -> str:
    """The pre-flight's sentence for the job's log."""
    plan = DistillPlan(len(train_ds), len(eval_ds), config.training.seq_length,
                       train_ds.loss_tokens + eval_ds.loss_tokens, estimate_memory(config, vocab, on_gpu),
                       "cuda" if on_gpu else "cpu")
    text, warnings = describe(plan)
    return " ".join([text, *warnings])
