"""In-memory candidates: merge a recipe straight into a model held in memory, no checkpoint written.

The inputs are read once per search and kept in memory (on the GPU when there is one) in the compute
dtype; every trial plans its recipe with the normal merge's TaskPlanner (headers only, so each tensor gets
exactly the parameter values the written merge would give it) and runs the same method function per
tensor, then copies the result into the held model's parameters. So a candidate's weights equal the
written merge's for the same recipe (tests/test_search.py checks it).
"""

from __future__ import annotations

import torch

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.merge.plan import pick_device
from fusion_gui.engine.merge.recipe import recipe_from_dict
from fusion_gui.engine.merge.tasks import TaskPlanner, TensorTask
from fusion_gui.engine.methods import get_method
from fusion_gui.engine.methods.base import side_by_side
from fusion_gui.engine.naming import count_layers
from fusion_gui.formatting import format_bytes


class CandidateMerger:
    """Holds the inputs and one model; `load(recipe)` makes the model that recipe's merge."""

    def __init__(self, models: list[str], base: str | None, device: str = "auto"):
        from fusion_gui.engine.evaluate.scoring import load_causal_lm

        self.device = pick_device(device)
        refs = list(dict.fromkeys([*models, *([base] if base else [])]))
        self.readers, self._inputs = {}, {}
        try:
            for ref in refs:
                self.readers[ref] = open_model(ref)
            self.n_layers = count_layers(self.readers[refs[0]].tensors)
            self._check_memory()
            # the held model: the base's (or first model's) architecture and tokenizer, its weights replaced per trial
            self.model, self.tokenizer = load_causal_lm(base or models[0], str(self.device))
        except BaseException:
            self.close()
            raise
        self.weights = self.model.state_dict()  # views of the parameters: copying into them changes the model

    def _check_memory(self) -> None:
        """The inputs (float32, as the search holds them) and the held model must fit, or the search would swap."""
        import psutil

        need = sum(i.nbytes // i.dtype.itemsize * 4 for r in self.readers.values() for i in r.tensors.values())
        need += need // len(self.readers)  # the held model, about one input's size
        if self.device.type == "cuda":
            free, where = torch.cuda.mem_get_info(self.device)[0], "GPU memory"
        else:
            free, where = psutil.virtual_memory().available, "memory"
        if need > 0.9 * free:
            raise InputError(f"A search holds its {len(self.readers)} inputs and one merged model in {where}: about "
                             f"{format_bytes(need)}, but only {format_bytes(free)} is free.")

    @property
    def input_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._inputs.values())

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()
        self._inputs.clear()

    def tasks(self, recipe_data: dict) -> tuple[list[TensorTask], object]:
        """The normal merge's task list for a recipe (every tensor with its resolved parameters)."""
        recipe = recipe_from_dict(recipe_data)
        method = get_method(recipe.merge_method)
        missing = [m for m in recipe.referenced_models() if m not in self.readers]
        if missing:
            raise InputError(f"The recipe names {missing[0]}, which this search did not load.")
        planner = TaskPlanner(recipe, method, self.readers, None, recipe.random_seed or 0)
        tasks = planner.plan()[0]
        if self.device.type == "cuda":  # as the normal merge: the math runs on the GPU in float32
            for task in tasks:
                if task.floating and task.compute_dtype != torch.float64:
                    task.compute_dtype = torch.float32
        return tasks, method

    def _input(self, model: str, tensor: str, dtype: torch.dtype, floating: bool) -> torch.Tensor:
        """An input tensor, read from disk the first time only."""
        key = (model, tensor, dtype if floating else None)
        found = self._inputs.get(key)
        if found is None:
            found = self.readers[model].get(tensor)
            if floating:
                found = found.to(device=self.device, dtype=dtype)
            self._inputs[key] = found
        return found

    @torch.no_grad()
    def merged(self, recipe_data: dict, cancel: CancelToken | None = None):
        """(output tensor name, merged tensor in the output dtype) for every tensor of the recipe's merge."""
        tasks, method = self.tasks(recipe_data)
        for task in tasks:
            if cancel is not None:
                cancel.raise_if_cancelled()
            tensors = [self._input(s.model, s.tensor, task.compute_dtype, task.floating) for s in task.sources]
            if not task.floating:
                yield task.name, tensors[0]
                continue
            generator = None
            if task.seed is not None:
                generator = torch.Generator(device=self.device).manual_seed(task.seed)
            with side_by_side(None):
                result = method.fn(tensors, task.base_index, task.params, [s.params for s in task.sources], generator)
            yield task.name, result.tensor.to(task.out_dtype)

    @torch.no_grad()
    def load(self, recipe_data: dict, cancel: CancelToken | None = None):
        """Make the held model the recipe's merge; returns (model, tokenizer)."""
        for name, tensor in self.merged(recipe_data, cancel):
            target = self.weights.get(name)
            if target is None:
                raise InputError(f"The merged tensor {name!r} has no place in the loaded model, so this "
                                 f"architecture cannot be searched in memory.")
            if target.shape != tensor.shape:
                raise InputError(f"The merged tensor {name!r} has shape {list(tensor.shape)}, the loaded model "
                                 f"{list(target.shape)}.")
            target.copy_(tensor)
        return self.model, self.tokenizer
