#!/usr/bin/env bash
# The first, short GPU call of a session (see ../shared/gpu/README.md): verification, what the
# kernels became (ptxas -v and SASS), the GEMM variants, and a baseline of ours against PyTorch at
# the gpt2 shape. run-all.sh is the full measurement; this one is for deciding what to work on.
# Prepare here:
#   ../shared/gpu/bundle.sh src/Cli/ArcherIlgpu.Cli.csproj && benchmarks/gpu/bundle-bench.sh
#   ARCHER_PTX_DIR=/tmp/ptx dotnet test tests/ArcherIlgpu.Kernels.Tests -c Release --filter GpuKernelsPtxTests
#   tar -cJf .gpu/ptx.tar.xz -C /tmp ptx
# then run this from the repository root with carry [".gpu"]; results land in $OUT (or ./gpu-out).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
tar -xJf .gpu/bundle.tar.xz -C .gpu
[ -f .gpu/bench.tar.xz ] && tar -xJf .gpu/bench.tar.xz -C .gpu/app
A=.gpu/app/archer
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt"
start=$SECONDS
stamp() { echo "== $1 at +$((SECONDS - start)) s"; }

# 1. What each kernel became: registers, spills, shared memory (all kernels), and the SASS of the
#    matmul and attention kernels, where the time goes.
if [ -f .gpu/ptx.tar.xz ]; then
  tar -xJf .gpu/ptx.tar.xz -C .gpu
  {
    for f in .gpu/ptx/*.ptx; do
      k=$(basename "$f" .ptx)
      echo "== $k"; ptxas -arch=sm_90 -v "$f" -o ".gpu/ptx/$k.cubin" 2>&1 | grep -E "registers|spill|smem|error"
    done
  } > "$OUT/ptxas.txt" 2>&1
  for k in TiledGemmKernel TiledGemmVec4Kernel Tf32GemmKernel Bf16GemmKernel Tf32GemmVec4Kernel Bf16GemmVec4Kernel AttnForwardKernel AttnDqKernel AttnDkvKernel AttnDecodeKernel FlashForwardKernel FlashDqKernel FlashDkvKernel; do
    [ -f ".gpu/ptx/$k.cubin" ] && { echo "== $k"; cuobjdump --dump-sass ".gpu/ptx/$k.cubin"; }
  done > "$OUT/sass.txt" 2>&1
  xz -6 "$OUT/sass.txt"
fi
stamp "ptxas+sass"

# 2. Correctness on the device, every family, against the cpu backend.
timeout 240 $A selfcheck --device cuda > "$OUT/selfcheck.txt" 2>&1; echo "selfcheck rc=$?" >> "$OUT/selfcheck.txt"
stamp "selfcheck"

# 3. Ours: the default path, the profile, the GEMM strategies and tensor-core matmuls at the gpt2 shape.
{
  timeout 60 $A bench train --preset bench-s --device cuda --steps 5
  timeout 90 $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 5
  timeout 90 $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 2 --warmup 1 --profile
  for v in "ARCHER_GEMM=splitk,vec4" "ARCHER_MATMUL=tf32" "ARCHER_MATMUL=tf32 ARCHER_GEMM=vec4" "ARCHER_ATTENTION=flash"; do
    echo "== $v"; env $v timeout 90 $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 3 --warmup 1
  done
  timeout 60 $A bench generate --preset gpt2 --batch 64 --new-tokens 256 --device cuda
} > "$OUT/ours.txt" 2>&1
stamp "ours"
[ -x .gpu/app/ArcherIlgpu.Benchmarks ] && {
  timeout 90 .gpu/app/ArcherIlgpu.Benchmarks --device cuda --op gemm-variants
  timeout 60 .gpu/app/ArcherIlgpu.Benchmarks --device cuda --op attention-variants
} > "$OUT/gemm-variants.txt" 2>&1
stamp "gemm-variants"

# 4. The peer in the same call: cuBLAS at the gpt2 products (fp32 and TF32) and PyTorch's gpt2 step.
{
  timeout 90 python3 benchmarks/pytorch/gpt2_step.py --matmul --shapes gpt2-b16 --steps 5
  timeout 60 python3 benchmarks/pytorch/gpt2_step.py --tf32 --matmul --shapes "" --steps 5
} > "$OUT/pytorch.txt" 2>&1
stamp "pytorch"

cat "$OUT/gpu.txt"; tail -3 "$OUT/selfcheck.txt"
grep -E "RESULT|ms/step|tokens/s|==" "$OUT/ours.txt" | tail -30
grep -E "TFLOP|GFLOP" "$OUT/gemm-variants.txt" 2>/dev/null | tail -30
cat "$OUT/pytorch.txt"
