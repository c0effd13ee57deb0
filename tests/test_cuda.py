"""On a CUDA machine the math runs on the GPU and gives the CPU's tensors (skipped elsewhere)."""

import pytest
import torch

from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.merge import MergeOptions, merge
from fusion_gui.engine.merge.recipe import recipe_from_dict

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def run(recipe, out, device):
    gen = merge(recipe_from_dict(recipe), out, MergeOptions(device=device))
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def tensors(folder):
    with open_model(str(folder)) as reader:
        return {name: reader.get(name) for name in reader.tensors}


@pytest.mark.parametrize("method", ["linear", "task_arithmetic", "ties", "breadcrumbs", "slerp", "dare_ties"])
def test_cuda_merge_matches_cpu(method, llama_family, tmp_path):
    base, a, b = llama_family
    params = {"weight": 0.6, "density": 0.5}
    recipe = {"merge_method": method, "base_model": str(base),
              "models": [{"model": str(m), "parameters": params} for m in (a, b)]}
    if method == "linear":
        recipe["models"].append({"model": str(base), "parameters": {"weight": 0.2}})
    if method == "slerp":
        recipe = {"merge_method": "slerp", "base_model": str(base), "parameters": {"t": 0.3},
                  "models": [{"model": str(base)}, {"model": str(a)}]}
    cpu = tensors(run(recipe, tmp_path / "cpu", "cpu").out_dir)
    result = run(recipe, tmp_path / "gpu", "cuda")
    assert result.tensors == len(cpu)
    gpu = tensors(result.out_dir)
    for name, expected in cpu.items():
        assert torch.isfinite(gpu[name]).all()
        if method != "dare_ties":  # random masks come from another generator on the GPU
            torch.testing.assert_close(gpu[name], expected, rtol=1e-4, atol=1e-5, msg=name)
