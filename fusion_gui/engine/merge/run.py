"""Run a merge: stream tensor by tensor from the inputs, through the method, to the output shards.

Reading the next tensors (a background thread) overlaps computing the current one, and
writing (the writer's own thread) overlaps both. Memory holds a few tensors per input plus
the write queue, whatever the model size. The output appears at OUT_DIR only when complete.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from fusion_gui.engine.inspect.analysis import LayerAccumulator, measure_tensor
from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError, OutputError
from fusion_gui.engine.evaluate.smoke import check_output
from fusion_gui.engine.io.partial import claim, publish, sweep_partials, temp_dir_for
from fusion_gui.engine.io.writer import AsyncShardedWriter, ShardedWriter, disk_error
from fusion_gui.engine.merge.memory import JobMemory
from fusion_gui.engine.merge.output import copy_side_files, loader_class, write_config, write_model_card
from fusion_gui.engine.merge.plan import PREFETCH, MergeOptions, MergePlan, plan_merge
from fusion_gui.engine.merge.recipe import Recipe
from fusion_gui.engine.merge.tasks import TensorTask
from fusion_gui.engine.merge.model_tokenizer import load_tokenizer, tokenizer_folder
from fusion_gui.engine.methods.base import side_by_side
from fusion_gui.events import Event, Log, MergeResult, Progress

__all__ = ["MergeOptions", "merge", "plan_merge"]


def _load(plan: MergePlan, task: TensorTask) -> list[torch.Tensor]:
    """Read one task's inputs and put them in the compute dtype on the compute device."""
    tensors = []
    for source in task.sources:
        tensor = plan.readers[source.model].get(source.tensor)
        if task.floating:
            tensor = tensor.to(device=plan.device, dtype=task.compute_dtype)
        tensors.append(tensor)
    models = [s.model for s in task.sources]
    if task.permute_vocab:  # rows in the output tokenizer's order, so the method sees equal shapes
        tensors = plan.vocabulary.permute(tensors, models, task.vocab_base)
    if plan.prepared is not None and task.floating:
        tensors += _prepared_tensors(plan, task, models)
    return tensors


def _prepared_tensors(plan: MergePlan, task: TensorTask, models: list[str]) -> list[torch.Tensor]:
    """What the method's prepare step gives for this task's inputs, after the weights: the first
    prepared tensor of every input, then the second of every input, ... (see methods/base.py)."""
    per_input = [plan.prepared.tensors_for(s.model, s.tensor) for s in task.sources]
    groups = [[t.to(plan.device, torch.float32) for t in group] for group in zip(*per_input)]
    if task.permute_vocab and plan.prepared.rows_follow_weights:  # rows in the output tokenizer's order
        groups = [plan.vocabulary.permute(group, models, task.vocab_base) for group in groups]
    return [t for group in groups for t in group]


def _compute(plan: MergePlan, task: TensorTask, tensors: list[torch.Tensor], width: int | None = None):
    if not task.floating:  # integer buffers (position ids, masks) must agree; copy them
        for source, tensor in zip(task.sources[1:], tensors[1:]):
            if not torch.equal(tensor, tensors[0]):
                raise InputError(f"Non-float tensor '{task.name}' differs between "
                                 f"'{task.sources[0].model}' and '{source.model}'; it cannot be merged.")
        return tensors[0], None
    generator = None
    if task.seed is not None:
        generator = torch.Generator(device=plan.device).manual_seed(task.seed)
    per_model = [s.params for s in task.sources]
    if plan.prepared is not None:
        per_model = [{**s.params, **plan.prepared.model_params(s.model)} for s in task.sources]
    with torch.no_grad(), side_by_side(width):  # as many models' work at once as the plan's budget allows
        result = plan.method.fn(tensors, task.base_index, task.params, per_model, generator)
    return result.tensor, result


def _measure(plan: MergePlan, task: TensorTask, tensors: list[torch.Tensor], merged: torch.Tensor, stats):
    """Metrics against the base (or, with no base, against the first input)."""
    ref_index = task.base_index if task.base_index is not None else 0
    labels = tuple(plan.readers[s.model].label for k, s in enumerate(task.sources) if k != ref_index)
    others = [t for k, t in enumerate(tensors) if k != ref_index]
    return measure_tensor(task.name, labels, others, tensors[ref_index], merged,
                          sign_conflict=stats.sign_conflict if stats else None,
                          kept_fraction=stats.kept_fraction if stats else None), labels


def merge(recipe: Recipe, out_dir: str | Path, options: MergeOptions = MergeOptions(),
          cancel: CancelToken | None = None) -> Generator[Event, None, MergeResult]:
    """Merge as the recipe says into OUT_DIR, yielding progress and metrics as tensors finish."""
    memory = JobMemory().start()  # the job's own peak: growth above what the process holds now
    try:
        return (yield from _merge(recipe, out_dir, options, cancel or CancelToken(), memory))
    finally:
        memory.stop()


def _merge(recipe: Recipe, out_dir: Path | str, options: MergeOptions, cancel: CancelToken,
           memory: JobMemory) -> Generator[Event, None, MergeResult]:
    start = time.perf_counter()
    plan = plan_merge(recipe, out_dir, options)
    temp = temp_dir_for(plan.out_dir)
    writer = None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusion-read")
    try:
        yield plan.summary
        for warning in plan.warnings:
            yield Log(warning, "warning")
        if plan.method.prepare is not None:  # e.g. Fisher: estimate each input's Fisher first
            plan.prepared = yield from plan.method.prepare.run(plan, cancel)
        streaming = time.perf_counter()  # progress and ETA count the tensors' streaming, not the prepare step
        yield Log(f"Merging {len(plan.readers)} models with {plan.method.name} on {plan.device}: "
                  f"{len(plan.tasks)} tensors, {plan.summary.output_bytes / 1e9:.2f} GB.")
        yield from sweep_partials(plan.out_dir.parent)  # a killed job's leftovers, never a running one's
        claim(temp, "merge")
        writer_cls = AsyncShardedWriter if options.async_io else ShardedWriter
        writer = writer_cls(temp, [(t.name, t.shape, t.out_dtype) for t in plan.tasks], plan.shard_bytes,
                            metadata={"format": "pt", "merge_method": plan.method.name})
        tasks = plan.tasks
        queue: list[Future] = [pool.submit(_load, plan, t) for t in tasks[:PREFETCH]]
        accumulator, layer_done = None, {}
        bytes_done, total = 0, plan.summary.output_bytes
        for i, task in enumerate(tasks):
            cancel.raise_if_cancelled()
            tensors = queue.pop(0).result()
            if i + PREFETCH < len(tasks):
                queue.append(pool.submit(_load, plan, tasks[i + PREFETCH]))
            merged, stats = _compute(plan, task, tensors, plan.side_by_side[i])
            if task.floating:
                (event, sums), labels = _measure(plan, task, tensors[:len(task.sources)], merged, stats)
                accumulator = accumulator or LayerAccumulator(labels)
            writer.write(task.name, merged.to(task.out_dtype))
            del tensors, merged
            bytes_done += task.out_bytes
            if task.floating:
                yield event
                accumulator.add(event, sums)
                layer = event.layer
            else:
                layer = None
            layer_done[layer] = layer_done.get(layer, 0) + 1
            if layer is not None and layer_done[layer] == plan.layer_sizes.get(layer) and accumulator:
                yield accumulator.layer(layer)
            yield Progress(i + 1, len(tasks), bytes_done, total, time.perf_counter() - streaming, task.name)
        if accumulator and None in layer_done and None in accumulator._layers:
            yield accumulator.layer(None)
        cancel.raise_if_cancelled()
        yield Log("Finishing shards and writing config, tokenizer and model card.")
        shard_files = writer.finish()
        _write_side_files(plan, temp)
        peak = memory.stop()  # the merge's own, before the smoke check loads the model
        smoke = (yield from check_output(temp, [r.path for r in plan.readers.values()], options.device, cancel)
                 ) if options.smoke else None
        publish(temp, plan.out_dir, options.force)
        seconds = time.perf_counter() - start
        yield Log(f"Done in {seconds:.1f} s: {plan.out_dir}")
        return MergeResult(str(plan.out_dir), len(tasks), bytes_done, len(shard_files), seconds,
                           peak, tuple(accumulator.all_layers()) if accumulator else (), smoke)
    except OSError as err:
        raise (disk_error(plan.out_dir.parent, err, plan.summary.output_bytes) or OutputError(
            f"Writing the output failed: {err.strerror or err} ({err.filename or temp}).")) from err
    finally:
        for future in queue if "queue" in locals() else []:
            future.cancel()
        pool.shutdown(wait=True)
        if writer is not None:
            writer.abort()
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
        plan.close()


def _write_side_files(plan: MergePlan, temp: Path) -> None:
    donor = plan.readers[plan.config_donor]
    floating = [t.out_dtype for t in plan.tasks if t.floating]
    vocabulary = plan.vocabulary
    write_config(donor, temp, floating[0] if floating else None, plan.out_layers,
                 vocab_size=vocabulary.rows if vocabulary else None)
    if vocabulary is not None:  # the built tokenizer replaces the source's files
        copy_side_files(donor, None, temp)
        if plan.chat_template:
            vocabulary.tokenizer.chat_template = plan.chat_template
        vocabulary.tokenizer.save_pretrained(temp)
    else:
        tokenizer_reader = plan.readers[plan.tokenizer_donor]
        copy_side_files(donor, tokenizer_reader, temp)
        if plan.chat_template and tokenizer_folder(tokenizer_reader) is not None:
            tokenizer = load_tokenizer(tokenizer_reader)  # re-saved, as mergekit does, to carry the template
            tokenizer.chat_template = plan.chat_template
            tokenizer.save_pretrained(temp)
    write_model_card(temp, plan.recipe, plan.out_dir.name, plan.method.pretty_name,
                     plan.method.reference, loader_class(donor.config), (temp / "tokenizer_config.json").is_file())
