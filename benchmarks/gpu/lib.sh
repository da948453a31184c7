# Shared by the GPU scripts (run-all.sh, gemm-check.sh); sourced with DEADLINE set. Unpacks the bundle
# (.gpu/bundle.tar.xz, the op benchmarks, the PTX), defines A (the CLI), B (the op benchmarks), PY (the
# PyTorch peers), G (the gpt2 training step), the `step` runner with its deadline, `selfcheck`, and starts ptxas/SASS of every kernel in the
# background (results in $OUT: ptxas.txt, sass.txt.xz, gpu.txt).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
start=$SECONDS
tar -xJf .gpu/bundle.tar.xz -C .gpu
[ -f .gpu/bench.tar.xz ] && tar -xJf .gpu/bench.tar.xz -C .gpu/app
A=.gpu/app/archer
B=.gpu/app/ArcherIlgpu.Benchmarks
PY=benchmarks/pytorch
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1

# step LIMIT CMD...: runs CMD under timeout min(LIMIT, seconds left), or skips it when under 15 s are left.
step() {
  local limit=$1; shift
  local left=$((DEADLINE - (SECONDS - start)))
  if [ "$left" -lt 15 ]; then echo "== SKIPPED (deadline): $*"; return; fi
  [ "$left" -lt "$limit" ] && limit=$left
  echo "== $* (limit ${limit} s, at +$((SECONDS - start)) s)"
  timeout "$limit" "$@"
  echo "== rc=$?"
}

# Correctness first: a figure from a wrong kernel is worth nothing (every family against the cpu backend).
selfcheck() {
  step 150 $A selfcheck --device cuda > "$OUT/selfcheck.txt" 2>&1; echo "selfcheck rc=$?" >> "$OUT/selfcheck.txt"
  tail -2 "$OUT/selfcheck.txt"
}

# GPT-2 124M at B16 T1024: 1 warm-up and 3 timed steps.
G="$A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 3 --warmup 1"

# Registers, spills and shared memory of every kernel; SASS of the matmul and attention kernels.
sass() {
  tar -xJf .gpu/ptx.tar.xz -C .gpu
  for f in .gpu/ptx/*.ptx; do
    k=$(basename "$f" .ptx)
    echo "== $k"; ptxas -arch=sm_90 -v "$f" -o ".gpu/ptx/$k.cubin" 2>&1 | grep -E "registers|spill|smem|error"
  done > "$OUT/ptxas.txt" 2>&1
  for k in TiledGemmKernel TiledGemmVec4Kernel Tf32GemmKernel Bf16GemmKernel Tf32GemmVec4Kernel Bf16GemmVec4Kernel \
           AttnForwardKernel AttnDqKernel AttnDkvKernel AttnDecodeKernel FlashForwardKernel FlashDqKernel FlashDkvKernel; do
    [ -f ".gpu/ptx/$k.cubin" ] && { echo "== $k"; cuobjdump --dump-sass ".gpu/ptx/$k.cubin"; }
  done > "$OUT/sass.txt" 2>&1
  xz -6 "$OUT/sass.txt"
}
[ -f .gpu/ptx.tar.xz ] && { nice -n 10 bash -c "$(declare -f sass); OUT=$OUT sass" & }

