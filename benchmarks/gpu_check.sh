#!/usr/bin/env bash
# One prepared run on a lent CUDA machine (see README): the CUDA tests, then the merge benchmark
# on the CPU and on the GPU, each against its own I/O floor. Logs go to $OUT (or ./gpu-logs).
set -u
OUT=${OUT:-gpu-logs}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, safetensors; print('torch', torch.__version__, 'transformers', transformers.__version__, 'safetensors', safetensors.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
# every test marked cuda: merges (test_cuda, test_methods), LoRA extraction, Fisher, distillation in bf16/fp16
timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts="" -m cuda tests/test_cuda.py tests/test_methods.py \
    tests/test_lora.py tests/test_fisher.py tests/test_distill.py 2>&1 | tee "$OUT/pytest.log" | tail -25
timeout 150 python3 benchmarks/bench_merge.py --device cuda 2>&1 | tee "$OUT/bench_cuda.log"
timeout 100 python3 benchmarks/bench_merge.py --device cpu --methods ties,dare_ties 2>&1 | tee "$OUT/bench_cpu.log"
