#!/usr/bin/env bash
# Everything the GPU machine runs in one call (see ../shared/gpu/README.md): verification, our
# training and generation benchmarks, then PyTorch eager on the same card. Build the bundle first:
#   ../shared/gpu/bundle.sh src/Cli/ArcherIlgpu.Cli.csproj && benchmarks/gpu/bundle-bench.sh
# (the second adds the op benchmarks for the GEMM-variant comparison; without it that step is skipped)
# then run this from the repository root with carry [".gpu"]; results land in $OUT (or ./gpu-out).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
tar -xJf .gpu/bundle.tar.xz -C .gpu
A=.gpu/app/archer
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt"
timeout 300 $A selfcheck --device cuda > "$OUT/selfcheck.txt" 2>&1; echo "selfcheck rc=$?" >> "$OUT/selfcheck.txt"
{
  for p in bench-s bench-m; do timeout 120 $A bench train --preset $p --device cuda --steps 10; done
  timeout 150 $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 5
  timeout 150 $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 2 --warmup 1 --profile
  # The flash attention kernels (off by default until measured): the same gpt2 step with them on.
  ARCHER_ATTENTION=flash timeout 150 $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 5
  timeout 150 $A bench train --preset gpt2-medium --batch 8 --seq 1024 --device cuda --steps 3
  timeout 150 $A bench train --preset qwen2.5-0.5b --batch 4 --seq 1024 --device cuda --steps 3
  timeout 100 $A bench generate --preset gpt2 --batch 64 --new-tokens 256 --device cuda
  timeout 100 $A bench generate --preset gpt2 --batch 256 --new-tokens 256 --device cuda
} > "$OUT/ours.txt" 2>&1
# The optional GEMM strategies (ARCHER_GEMM=splitk,vec4; off by default) against the default kernels
# at the gpt2 products, each timed alone (about 15 s).
if [ -f .gpu/bench.tar.xz ]; then
  tar -xJf .gpu/bench.tar.xz -C .gpu/app
  timeout 120 .gpu/app/ArcherIlgpu.Benchmarks --device cuda --op gemm-variants > "$OUT/gemm-variants.txt" 2>&1
  # Warp vs flash attention kernels, forward and backward at the gpt2, Qwen2.5-0.5B and a D128 shape (about 20 s).
  timeout 90 .gpu/app/ArcherIlgpu.Benchmarks --device cuda --op attention-variants > "$OUT/attention-variants.txt" 2>&1
fi
if [ "${SKIP_PYTORCH:-0}" != 1 ]; then
  {
    timeout 150 python3 benchmarks/pytorch/gpt2_step.py --matmul --shapes bench-s,bench-m,gpt2-b16,350m --steps 10
    timeout 150 python3 benchmarks/pytorch/gpt2_step.py --tf32 --matmul --shapes bench-s,bench-m,gpt2-b16,350m --steps 10
  } > "$OUT/pytorch.txt" 2>&1
fi
tail -4 "$OUT/selfcheck.txt"; grep -vE "^\s*$" "$OUT/ours.txt" | tail -80; cat "$OUT/gemm-variants.txt" 2>/dev/null; cat "$OUT/attention-variants.txt" 2>/dev/null; cat "$OUT/pytorch.txt" 2>/dev/null
