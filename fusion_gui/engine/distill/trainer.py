"""Run a distillation on transformers' Trainer and turn it into a generator of engine events.

Trainer owns the loop (mixed precision, accumulation, checkpoints, resume, accelerate); we add the
loss (compute_loss) and a callback that reports steps, waits while paused and stops on cancel.
Trainer.train() blocks, so it runs on a helper thread that hands events to the generator.
"""

from __future__ import annotations

import json
import queue
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.utils import logging as hf_logging

from fusion_gui import __version__
from fusion_gui.engine.cancel import CancelToken
import fusion_gui.engine.distill.losses as L
from fusion_gui.engine.distill.batch_loss import LossSetup, batch_loss, can_chunk
from fusion_gui.engine.distill.config import DistillConfig, dump_config
from fusion_gui.engine.distill.data import load_blocks
from fusion_gui.engine.distill.lora_student import as_lora, trainable_parameters
from fusion_gui.engine.distill.preflight import plan_summary
from fusion_gui.engine.distill.teacher_setup import match_tokenizers, trainer_setup
from fusion_gui.engine.errors import Cancelled, InputError
from fusion_gui.engine.evaluate.smoke import check_output
from fusion_gui.engine.io.partial import claim, publish, release, sweep_partials, temp_dir_for
from fusion_gui.engine.io.resolve import is_local_path
from fusion_gui.engine.io.writer import disk_error
from fusion_gui.engine.merge.output import hub_repo_id, refuse_input_overlap
from fusion_gui.events import DistillResult, EvalStep, Event, Log, TrainStep

STATE_FILE = "distill_state.json"  # TAID's t and momentum, saved in each checkpoint
CONFIG_FILE = "distill_config.yml"
_ELSEWHERE = "choose another folder or disk"  # a refused save's advice
_PROJECTION = "distill_projection"  # attached to the student so Trainer trains and checkpoints it


class _Recorder:
    """Per-term loss sums since the last report, separately for train and eval."""

    def __init__(self):
        self.sums = {"train": defaultdict(float), "eval": defaultdict(float)}
        self.counts = {"train": 0, "eval": 0}

    def add(self, mode: str, terms: dict[str, float]) -> None:
        for k, v in terms.items():
            self.sums[mode][k] += v
        self.counts[mode] += 1

    def pop(self, mode: str) -> dict[str, float]:
        n = max(1, self.counts[mode])
        out = {k: v / n for k, v in self.sums[mode].items()}
        self.sums[mode], self.counts[mode] = defaultdict(float), 0
        return out


class DistillTrainer(Trainer):
    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean; Trainer divides by accumulation

    def __init__(self, *args, teacher, setup: LossSetup, taid, recorder, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher, self.setup, self.taid, self.recorder = teacher, setup, taid, recorder
        self.heads = False  # not looked for yet (chunked loss)

    def _save_checkpoint(self, model, trial):
        """A checkpoint carries an owner record while it is written, so a killed save is cleaned up later;
        a failed save is removed now."""
        folder = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
        if self.is_world_process_zero():
            claim(folder, "distillation checkpoint", exist_ok=True)
        try:
            super()._save_checkpoint(model, trial)
        except Exception as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise disk_error(folder.parent, err, _checkpoint_bytes(model), advice=_ELSEWHERE,
                             what="a checkpoint") or err
        if self.is_world_process_zero():
            release(folder)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        unwrapped = self.accelerator.unwrap_model(model)
        # chunking calls the body and output layer apart: only on an unwrapped model (DDP syncs in forward)
        if self.heads is False:  # found once: the modules stay the same objects for the whole run
            self.heads = can_chunk(unwrapped, self.teacher) if self.setup.chunk else None
        heads = self.heads if unwrapped is model else None
        total, record, out = batch_loss(self.setup, model, self.teacher, inputs, self.taid.t if self.taid else None,
                                        not model.training, getattr(unwrapped, _PROJECTION, None), heads)
        self.recorder.add("train" if model.training else "eval", record)
        return (total, out) if return_outputs else total


class _EventCallback(TrainerCallback):
    def __init__(self, emit, recorder, taid, cancel, stop, pause, started, save_now=None):
        self.emit, self.recorder, self.taid = emit, recorder, taid
        self.cancel, self.stop, self.pause, self.started = cancel, stop, pause, started
        self.save_now = save_now
        self.lr, self.cancelled, self.last_eval, self.last_eval_step = 0.0, False, {}, -1

    def _should_stop(self) -> bool:
        return self.stop.is_set() or (self.cancel is not None and self.cancel.cancelled)

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lr = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else 0.0

    def on_step_end(self, args, state, control, **kwargs):
        terms = self.recorder.pop("train")
        t_used = self.taid.t if self.taid is not None else None
        if self.taid is not None and "taid" in terms:
            self.taid.update(terms["taid"], state.global_step, state.max_steps)
        self.emit(TrainStep(state.global_step, state.max_steps, float(state.epoch or 0.0), terms, self.lr,
                            time.monotonic() - self.started, t_used))
        if self.pause is not None and self.pause.is_set() and not self._should_stop():
            self.emit(Log(f"Paused after step {state.global_step}."))
            while self.pause.is_set() and not self._should_stop():
                time.sleep(0.05)
        if self.save_now is not None and self.save_now.is_set():  # "Save checkpoint now"
            self.save_now.clear()
            control.should_save = True  # Trainer saves right after this callback returns
        if self._should_stop():  # stop now: no evaluation, no checkpoint of a half-wanted state
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = control.should_evaluate = False
        return control

    def on_evaluate(self, args, state, control, **kwargs):
        self.last_eval, self.last_eval_step = self.recorder.pop("eval"), state.global_step
        self.emit(EvalStep(state.global_step, self.last_eval))

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.taid is not None and state.is_world_process_zero:  # one writer under accelerate launch
            (folder / STATE_FILE).write_text(json.dumps({"taid": self.taid.state_dict()}))
        self.emit(Log(f"Saved checkpoint {folder} (resume with resume_from)."))


def _training_args(config: DistillConfig, output_dir: Path, on_gpu: bool) -> TrainingArguments:
    o = config.training
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=o.max_steps or -1, num_train_epochs=o.epochs or 1.0,
        per_device_train_batch_size=o.batch_size, per_device_eval_batch_size=o.batch_size,
        gradient_accumulation_steps=o.grad_accumulation, learning_rate=o.learning_rate,
        lr_scheduler_type=o.lr_schedule, warmup_steps=o.warmup_steps, seed=o.seed, data_seed=o.seed,
        bf16=on_gpu and o.precision == "bf16", fp16=on_gpu and o.precision == "fp16", use_cpu=o.device == "cpu",
        eval_strategy="steps" if o.eval_every else "no", eval_steps=o.eval_every or None,
        save_strategy="steps" if o.checkpoint_every else "no", save_steps=o.checkpoint_every or 500,
        logging_strategy="no", report_to="none", disable_tqdm=True, remove_unused_columns=False,
        prediction_loss_only=True, dataloader_num_workers=0, dataloader_pin_memory=on_gpu)


def distill(config: DistillConfig, out_dir: str | Path, cancel: CancelToken | None = None,
            pause: threading.Event | None = None, force: bool = False,
            save_now: threading.Event | None = None, smoke: bool = True) -> Generator[Event, None, DistillResult]:
    """Distill config.teacher into config.student; the student appears at OUT_DIR only when done.

    pause: while set, training waits between steps. save_now: when set, a checkpoint is saved
    after the current step (into the checkpoint folder) and the event is cleared. smoke: smoke-check
    the student (against the teacher and the starting student) before it appears.
    Yields Log, TrainStep, EvalStep.
    """
    out_dir, o, started = Path(out_dir), config.training, time.monotonic()
    if out_dir.exists() and not force:
        raise InputError(f"Output folder '{out_dir}' already exists.")
    inputs = {"teacher": config.teacher, "student": config.student, "data": config.data.path,
              "resume_from": o.resume_from or ""}
    refuse_input_overlap(out_dir, {k: Path(v) for k, v in inputs.items() if v and is_local_path(v)})
    if o.resume_from and not (Path(o.resume_from) / "trainer_state.json").is_file():
        raise InputError(f"'{o.resume_from}' is not a Trainer checkpoint folder (no trainer_state.json).")
    # everything a user can get wrong is checked here, before any weights load or anything is written
    tokenizer, vocab = match_tokenizers(config)  # another vocabulary is aligned, not refused
    if config.teacher_cache:  # another teacher's or data's cache is refused before anything is written
        from fusion_gui.engine.distill.teacher_cache import check_cache

        check_cache(config.teacher_cache, config)
    train_ds, eval_ds = load_blocks(config.data.path, config.data.text_field, tokenizer, o.seq_length,
                                    config.data.eval_fraction, o.seed)
    on_gpu = o.device != "cpu" and torch.cuda.is_available()
    if o.precision != "fp32" and not on_gpu:
        yield Log(f"precision {o.precision} needs a CUDA GPU; training in fp32.", "warning")
    ckpt_dir = Path(o.checkpoint_dir) if o.checkpoint_dir else out_dir.parent / f"{out_dir.name}-checkpoints"
    temp = temp_dir_for(out_dir)
    ckpt_existed = ckpt_dir.exists()
    events: queue.Queue = queue.Queue()
    stop, outcome = threading.Event(), {}
    taid_spec = next((s for s in config.losses if s.name == "taid"), None)
    taid = (L.TaidSchedule(taid_spec.params["t_start"], taid_spec.params["t_end"], taid_spec.params["alpha"],
                           taid_spec.params["momentum"]) if taid_spec else None)
    if taid is not None and o.resume_from and (Path(o.resume_from) / STATE_FILE).is_file():
        taid.load_state_dict(json.loads((Path(o.resume_from) / STATE_FILE).read_text())["taid"])

    def run() -> None:
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # transformers' load/save bars would garble our own progress bar
        try:
            outcome["result"] = _train(config, tokenizer, vocab, train_ds, eval_ds, on_gpu, temp, ckpt_dir,
                                       taid, events.put, cancel, stop, pause, started, save_now)
        except BaseException as err:  # noqa: BLE001 - handed to the generator's thread to raise
            outcome["error"] = err
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    yield Log(f"Distilling '{config.teacher}' into '{config.student}': "
              + plan_summary(config, train_ds, eval_ds, vocab, on_gpu))
    temp.parent.mkdir(parents=True, exist_ok=True)
    for folder in (out_dir.parent, ckpt_dir):  # a killed job's leftovers, never a running one's
        yield from sweep_partials(folder)
    claim(temp, "distillation")
    thread = threading.Thread(target=run, name="fusion-distill", daemon=True)
    try:
        thread.start()
        while thread.is_alive() or not events.empty():
            try:
                yield events.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        steps, final_eval, writer = outcome["result"]
        verdict = (yield from check_output(temp, [config.teacher, config.student], o.device, cancel)
                   ) if writer and smoke else None
        if writer:  # under accelerate launch only the main process publishes; the others' temp goes below
            publish(temp, out_dir, force)
    finally:
        stop.set()  # a closed generator (Ctrl-C, window closed) stops training at the next step
        thread.join()
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
        if not ckpt_existed and ckpt_dir.is_dir() and not any(ckpt_dir.iterdir()):
            ckpt_dir.rmdir()  # Trainer makes its folder up front; no checkpoint was saved in it
    kept = str(ckpt_dir) if ckpt_dir.exists() and any(ckpt_dir.glob("checkpoint-*")) else None
    return DistillResult(str(out_dir), steps, time.monotonic() - started, final_eval, kept, verdict)


def _train(config, tokenizer, vocab, train_ds, eval_ds, on_gpu, temp, ckpt_dir, taid, emit, cancel, stop,
           pause, started, save_now=None):
    from transformers import AutoModelForCausalLM

    o = config.training
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(o.precision) if on_gpu else None
    save_dtype = _saved_dtype(config.student)  # loading in fp32 overwrites config.dtype: read it first
    teacher = None if config.teacher_cache else (  # a cache stands in for the teacher: never loaded
        AutoModelForCausalLM.from_pretrained(config.teacher, dtype=half or torch.float32))
    student = AutoModelForCausalLM.from_pretrained(config.student, dtype=torch.float32)
    if o.lora_rank:
        student = as_lora(student, o.lora_rank, o.lora_alpha)
        emit(Log(f"Training the student as a LoRA of rank {o.lora_rank}: {trainable_parameters(student):,} "
                 f"trainable parameters; merged into the student at the end."))
    hidden = any(s.name.startswith("hidden_") for s in config.losses)
    t_width = teacher.config.get_text_config().hidden_size if hidden else 0
    s_width = student.config.get_text_config().hidden_size
    if hidden and t_width != s_width:
        torch.manual_seed(o.seed)  # the projection starts the same in a run and its resumed twin
        student.add_module(_PROJECTION, torch.nn.Linear(s_width, t_width, bias=False))
    recorder = _Recorder()
    callback = _EventCallback(emit, recorder, taid, cancel, stop, pause, started, save_now)
    # checkpoints (scheduled or asked for) go where they outlive the job, for resume_from
    trainer_dir = ckpt_dir if (o.checkpoint_every or save_now is not None) else temp / ".trainer"
    trainer_class, teacher_args = trainer_setup(config, DistillTrainer, teacher, tokenizer, emit)
    trainer = trainer_class(
        model=student, args=_training_args(config, trainer_dir, on_gpu), train_dataset=train_ds,
        eval_dataset=eval_ds, callbacks=[callback],
        setup=LossSetup(config.losses, config.temperature, vocab, o.loss_chunk), taid=taid, recorder=recorder,
        **teacher_args)
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; our events say it instead
    if teacher is not None:
        teacher.to(trainer.args.device).eval().requires_grad_(False)
    trainer.train(resume_from_checkpoint=o.resume_from or None)
    if callback.cancelled:
        if cancel is not None and cancel.cancelled:
            raise Cancelled("Cancelled by the user.")
        raise Cancelled("Distillation stopped.")
    if callback.last_eval_step != trainer.state.global_step:
        trainer.evaluate()  # final held-out metrics for the model card and the result
    if not trainer.is_world_process_zero():  # data-parallel: the main process writes the one output
        return trainer.state.global_step, callback.last_eval, False
    student = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(student, _PROJECTION):
        delattr(student, _PROJECTION)
    if o.lora_rank:
        student = student.merge_and_unload()  # the output is a whole model, like a full fine-tune's
    if save_dtype is not None:
        student.to(save_dtype)
    shutil.rmtree(temp / ".trainer", ignore_errors=True)
    try:
        student.save_pretrained(temp)
        tokenizer.save_pretrained(temp)
        (temp / CONFIG_FILE).write_text(dump_config(config))
        _write_card(temp, config, trainer.state.global_step, callback.last_eval)
    except Exception as err:
        raise disk_error(temp.parent, err, _checkpoint_bytes(student) // 3, advice=_ELSEWHERE,
                         what="the student") or err
    return trainer.state.global_step, callback.last_eval, True


def _checkpoint_bytes(model) -> int:
    """About what a checkpoint takes: the weights and AdamW's two moments, in float32."""
    return 3 * sum(p.numel() * 4 for p in model.parameters())


def _saved_dtype(path: str) -> torch.dtype | None:
    from transformers import AutoConfig

    dtype = getattr(AutoConfig.from_pretrained(path), "dtype", None)
    dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else None


def _write_card(out: Path, config: DistillConfig, steps: int, metrics: dict[str, float]) -> None:
    import math

    student, teacher = Path(config.student).name, Path(config.teacher).name
    losses = ", ".join(f"{s.name} x {s.weight:g}" for s in config.losses)
    repo = hub_repo_id(config.student)  # the Hub resolves a repo id, not a local folder
    lines = ["---", *(["base_model:", f"- {repo}"] if repo else []), "library_name: transformers", "tags:", "- distillation",
             "- fusion-gui", "---", "", f"# {student} distilled from {teacher}", "",
             f"Made with fusion_gui {__version__}: the student `{config.student}` was trained for {steps} steps "
             f"to match the teacher `{config.teacher}` on `{config.data.path}`.", "",
             f"- Losses: {losses} (temperature {config.temperature:g})", "", "## Held-out metrics", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items())]
    for who in ("student", "teacher"):
        if f"ce_{who}" in metrics:
            lines.append(f"| perplexity ({who}) | {math.exp(min(50.0, metrics[f'ce_{who}'])):.3f} |")
    lines += ["", "## Config", "", f"Reproduce with `fusion-gui distill {CONFIG_FILE} OUT_DIR`.", "",
              "```yaml", dump_config(config).rstrip(), "```", ""]
    (out / "README.md").write_text("\n".join(lines))
