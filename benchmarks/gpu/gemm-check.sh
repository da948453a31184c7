#!/usr/bin/env bash
# The short GPU call after a change to the GEMM kernels (prepared like run-all.sh; carry [".gpu"],
# DEADLINE default 240 s): correctness first (`archer selfcheck --device cuda`), then the GEMM table op
# by op, the GPT-2 124M B16 T1024 step in bf16, tf32 and fp32 beside PyTorch eager in the same call, the
# bf16 step's profile, generation at batch 64 in the default precision beside transformers, and Nsight
# Compute on the first launch of each tensor-core kernel (the layer-0 qkv forward product: instructions,
# issue slots, stall reasons, shared-memory conflicts).
set -u
DEADLINE=${DEADLINE:-240}
source "$(dirname "$0")/lib.sh"
{
  selfcheck
  [ -x $B ] && step 60 $B --device cuda --op gemm-variants
  step 60 $G --precision bf16
  step 60 python3 $PY/gpt2_step.py --bf16 --shapes gpt2-b16 --steps 5 --warmup 2
  step 60 $G --precision tf32
  step 60 python3 $PY/gpt2_step.py --tf32 --matmul --shapes gpt2-b16 --steps 5 --warmup 2
  step 60 $G --precision fp32
  step 60 python3 $PY/gpt2_step.py --shapes gpt2-b16 --steps 5 --warmup 2
  step 45 $G --precision bf16 --profile
  step 60 $A bench generate --preset gpt2 --batch 64 --new-tokens 256 --device cuda
  step 60 python3 $PY/hf_bench.py generate --bf16 --batch 64 --new-tokens 256
  for p in tf32 bf16; do
    k=Bf16GemmVec4Kernel; [ $p = tf32 ] && k=Tf32GemmVec4Kernel
    step 40 ncu --kernel-name "regex:$k" --launch-count 1 --section SpeedOfLight --section Occupancy --section WarpStateStats \
      --section SchedulerStats --section ComputeWorkloadAnalysis --section InstructionStats --section SourceCounters \
      $A bench train --preset gpt2 --batch 16 --seq 1024 --device cuda --steps 1 --warmup 0 --precision $p
  done
} > "$OUT/main.txt" 2>&1
wait
echo "done at +$((SECONDS - start)) s"
tail -2 "$OUT/selfcheck.txt"
grep -E "^== |RESULT|gemm |pytorch gpt2|Duration|Executed Instructions  |Issue Slots Busy|Warp Cycles Per Issued|excessive" "$OUT/main.txt" | cut -c1-200
