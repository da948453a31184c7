#!/usr/bin/env bash
# The GPU measurement call (issue 15; see ../shared/gpu/README.md). A session gets 15 minutes of device
# time in all, start-up included, so this is ONE call, ordered by what matters most, with a deadline:
# every step gets min(its own limit, the time left) and steps that no longer fit are skipped and say so.
#   1. what each kernel became (ptxas -v, SASS), on the CPUs, in the background;
#   2. `archer selfcheck --device cuda`, every family against the cpu backend;
#   3. GPT-2 124M B16 T1024 training, ours and PyTorch eager side by side, in fp32, bf16 and tf32;
#   4. the step's profile in tf32 and bf16 (each op synchronised);
#   5. generation at batch 64 and 256, ours and transformers' `generate`, and ours in bf16; the decode
#      step's products at finer split-K and its profile;
#   6. one RL step at the Countdown study's shape (issue 14), and Nsight Compute on the GEMM kernels
#      (why the tensor-core kernel stays at ~20% of cuBLAS: stall reasons, issue slots, hot SASS lines);
#   7. the GEMM strategies op by op (gpt2 and LM-head products);
#   8. Qwen2.5-0.5B in bf16, ours and transformers;
#   9. the kernels that are not the default on CUDA (plain GEMM, warp attention) against the defaults;
#  10. the fp32 Qwen2.5-0.5B and 350M shapes, ours and the peers; the small presets.
# Used on an H200 on 2026-12-04 with DEADLINE=470, 330 and 390 (benchmarks/results/h200-2026-12-04-call{1,2,3}.txt):
# a fresh machine started in about 30 s, so a session's 900 s fit two such calls.
# Prepare here:
#   ../shared/gpu/bundle.sh src/Cli/ArcherIlgpu.Cli.csproj && benchmarks/gpu/bundle-bench.sh
#   ARCHER_PTX_DIR=/tmp/ptx dotnet test tests/ArcherIlgpu.Kernels.Tests -c Release --filter GpuKernelsPtxTests
#   tar -cJf .gpu/ptx.tar.xz -C /tmp ptx
# then run from the repository root with carry [".gpu"] and a timeout ~60 s above DEADLINE (default
# 480 s). Results land in $OUT (or ./gpu-out): main.txt (everything timed, in order), selfcheck.txt,
# ptxas.txt, sass.txt.xz, gpu.txt.
set -u
DEADLINE=${DEADLINE:-480}
source "$(dirname "$0")/lib.sh"

{
  # 2. Correctness first.
  selfcheck
  # 3. The headline: GPT-2 124M training step, ours and PyTorch eager, same precision, same call.
  step 60 $G --precision fp32
  step 60 python3 $PY/gpt2_step.py --matmul --shapes gpt2-b16 --steps 5 --warmup 2
  step 60 $G --precision bf16
  step 60 python3 $PY/gpt2_step.py --bf16 --shapes gpt2-b16 --steps 5 --warmup 2
  step 60 $G --precision tf32
  step 60 python3 $PY/gpt2_step.py --tf32 --matmul --shapes gpt2-b16 --steps 5 --warmup 2
  # 4. Where the time goes, op by op: the step's profile in the tensor-core precisions (each op
  #    synchronised); the GEMM strategies op by op come later (item 7).
  step 45 $G --precision tf32 --profile
  step 45 $G --precision bf16 --profile
  # 5. Generation, ours and transformers' generate.
  step 60 $A bench generate --preset gpt2 --batch 64 --new-tokens 256 --device cuda --precision fp32
  step 90 python3 $PY/hf_bench.py generate --batch 64,256 --new-tokens 256
  step 60 $A bench generate --preset gpt2 --batch 256 --new-tokens 256 --device cuda --precision fp32
  # bf16 generation (the CLI's default on CUDA since 2026-12-04: 1.8x fp32's tokens/s at batch 64).
  step 60 $A bench generate --preset gpt2 --batch 64 --new-tokens 256 --device cuda --precision bf16
  step 60 python3 $PY/hf_bench.py generate --bf16 --batch 64 --new-tokens 256
  # Why a decode step takes ~6 ms where reading the weights takes ~0.1: its products never split (K under
  # the 512-deep minimum slice), so 6-24 groups run on 132 SMs. The products at finer splits, then the
  # decode step's profile.
  [ -x $B ] && step 45 $B --device cuda --op decode-gemm
  step 45 $A bench generate --preset gpt2 --batch 64 --new-tokens 64 --device cuda --precision bf16 --profile
  # 6. One RL step at the Countdown study's shape (generation, old/reference log-probs, update), with
  #    the transfers per optimizer step; then Nsight Compute on the three GEMM kernels of the gpt2 step
  #    (the first 3 launches of each: the layer-0 qkv, attention-projection and fc forward products).
  R="$A bench rl --preset countdown-3m --algo archer --max-response-tokens 36 --prompts 16 --group-size 8 --device cuda"
  step 60 $R --steps 3 --warmup 1
  step 45 $R --steps 2 --warmup 1 --profile
  for k in Bf16GemmVec4Kernel Tf32GemmVec4Kernel TiledGemmVec4Kernel; do
    p=fp32; [ $k = Bf16GemmVec4Kernel ] && p=bf16; [ $k = Tf32GemmVec4Kernel ] && p=tf32
    step 50 ncu --kernel-name "regex:$k" --launch-count 3 --section SpeedOfLight --section LaunchStats --section Occupancy \
      --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      --section InstructionStats --section SourceCounters \
      $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 1 --warmup 0 --precision $p
  done
  # 7. The GEMM strategies at the gpt2 and LM-head products, op by op.
  [ -x $B ] && step 60 $B --device cuda --op gemm-variants
  # 8. The other shapes' headline: Qwen2.5-0.5B in bf16, ours and transformers.
  step 60 $A bench train --preset qwen2.5-0.5b --batch 4 --seq 1024 --device cuda --steps 3 --warmup 1 --precision bf16
  step 60 python3 $PY/hf_bench.py train --bf16 --batch 4 --seq 1024 --steps 3
  # 9. The kernels that are not the default on CUDA, against the defaults above: the plain GEMM and
  #    the warp attention kernels (the defaults until 2026-12-04), op by op and in the step.
  step 60 env ARCHER_GEMM=none ARCHER_ATTENTION=warp $G --precision fp32
  [ -x $B ] && step 45 $B --device cuda --op attention-variants
  step 45 $G --precision fp32 --profile
  # 10. The bigger shapes in fp32 and the small presets.
  step 60 $A bench train --preset qwen2.5-0.5b --batch 4 --seq 1024 --device cuda --steps 3 --warmup 1 --precision fp32
  step 60 python3 $PY/hf_bench.py train --batch 4 --seq 1024 --steps 3
  step 60 $A bench train --preset gpt2-medium --batch 8 --seq 1024 --device cuda --steps 3 --warmup 1
  step 60 python3 $PY/gpt2_step.py --shapes 350m --steps 3 --warmup 1
  step 30 $A bench train --preset bench-s --device cuda --steps 10
  step 30 $A bench train --preset bench-m --device cuda --steps 10
  step 60 python3 $PY/gpt2_step.py --shapes bench-s,bench-m --steps 10
} > "$OUT/main.txt" 2>&1
wait
echo "done at +$((SECONDS - start)) s"
cat "$OUT/gpu.txt"; tail -2 "$OUT/selfcheck.txt"
grep -E "^== |RESULT|ms/step|tokens/s|TFLOP|median" "$OUT/main.txt" | cut -c1-220
