#!/usr/bin/env bash
# The measurement call (issue 15 item 6; see ../shared/gpu/README.md): verification, then ours and the
# PyTorch / transformers peers on the same card in the same call, in each precision. About 8 minutes on
# an H100/H200; diagnose.sh is the shorter first call (SASS, GEMM variants, a baseline). Build first:
#   ../shared/gpu/bundle.sh src/Cli/ArcherIlgpu.Cli.csproj && benchmarks/gpu/bundle-bench.sh
# (the second adds the op benchmarks for the variant comparison; without it that step is skipped)
# then run this from the repository root with carry [".gpu"]; results land in $OUT (or ./gpu-out).
# SKIP_PYTORCH=1 leaves the peers out (e.g. to rerun only ours).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
tar -xJf .gpu/bundle.tar.xz -C .gpu
A=.gpu/app/archer
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt"
start=$SECONDS
stamp() { echo "== $1 at +$((SECONDS - start)) s" >> "$OUT/timeline.txt"; }
timeout 300 $A selfcheck --device cuda > "$OUT/selfcheck.txt" 2>&1; echo "selfcheck rc=$?" >> "$OUT/selfcheck.txt"
stamp selfcheck
{
  for p in bench-s bench-m; do timeout 120 $A bench train --preset $p --device cuda --steps 10; done
  for precision in fp32 tf32 bf16; do
    timeout 150 $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 5 --precision $precision
  done
  timeout 150 $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 2 --warmup 1 --profile
  # The flash attention kernels (off by default until measured): the same gpt2 step with them on.
  # The switches that are off by default until measured: flash attention, the tensor-core GEMM with 128-bit loads.
  # Compare each with the default run of the same precision above.
  echo "== ARCHER_ATTENTION=flash, fp32"
  ARCHER_ATTENTION=flash timeout 150 $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 5
  for precision in tf32 bf16; do
    echo "== ARCHER_GEMM=vec4 ARCHER_ATTENTION=flash, $precision"
    ARCHER_GEMM=vec4 ARCHER_ATTENTION=flash timeout 150 $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 5 --precision $precision
  done
  timeout 150 $A bench train --preset gpt2-medium --batch 8 --seq 1024 --device cuda --steps 3
  for precision in fp32 bf16; do
    timeout 150 $A bench train --preset qwen2.5-0.5b --batch 4 --seq 1024 --device cuda --steps 3 --precision $precision
  done
  for b in 64 256; do timeout 100 $A bench generate --preset gpt2 --batch $b --new-tokens 256 --device cuda; done
} > "$OUT/ours.txt" 2>&1
stamp ours
# The optional kernel strategies (off by default until measured) against the defaults, op by op.
if [ -f .gpu/bench.tar.xz ]; then
  tar -xJf .gpu/bench.tar.xz -C .gpu/app
  {
    timeout 120 .gpu/app/ArcherIlgpu.Benchmarks --device cuda --op gemm-variants   # about 30 s
    # Warp vs flash attention kernels, forward and backward at the gpt2, Qwen2.5-0.5B and a D128 shape (about 20 s).
    timeout 90 .gpu/app/ArcherIlgpu.Benchmarks --device cuda --op attention-variants
  } > "$OUT/variants.txt" 2>&1
fi
stamp variants
if [ "${SKIP_PYTORCH:-0}" != 1 ]; then
  {
    timeout 150 python3 benchmarks/pytorch/gpt2_step.py --matmul --shapes bench-s,bench-m,gpt2-b16,350m --steps 10
    timeout 120 python3 benchmarks/pytorch/gpt2_step.py --tf32 --matmul --shapes gpt2-b16 --steps 10
    timeout 120 python3 benchmarks/pytorch/gpt2_step.py --bf16 --shapes gpt2-b16 --steps 10
    timeout 120 python3 benchmarks/pytorch/hf_bench.py generate --batch 64,256 --new-tokens 256
    timeout 120 python3 benchmarks/pytorch/hf_bench.py train --batch 4 --seq 1024 --steps 3
    timeout 120 python3 benchmarks/pytorch/hf_bench.py train --bf16 --batch 4 --seq 1024 --steps 3
  } > "$OUT/pytorch.txt" 2>&1
fi
stamp pytorch
cat "$OUT/timeline.txt"; tail -4 "$OUT/selfcheck.txt"; grep -E "RESULT|^== " "$OUT/ours.txt"
grep -E "TFLOP|ms" "$OUT/variants.txt" 2>/dev/null | tail -40; cat "$OUT/pytorch.txt" 2>/dev/null
