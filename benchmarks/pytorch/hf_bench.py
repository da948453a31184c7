"""The Hugging Face peers for the GPU benchmark, on the same card in the same call as ours:

  generate  transformers' `generate` on a randomly initialised GPT-2 124M (no download: the GPU
            machine has no network), prompts of 16 random tokens, exactly N new tokens sampled at
            temperature 1 with the KV cache, like `archer bench generate --preset gpt2`.
  train     one training step of Qwen2.5-0.5B's shape (randomly initialised Qwen2ForCausalLM, eager
            attention, float32 or bf16 autocast, AdamW with clipping), like
            `archer bench train --preset qwen2.5-0.5b --batch 4 --seq 1024`.

usage: python3 hf_bench.py generate [--bf16] [--batch 64,256] [--new-tokens 256]
       python3 hf_bench.py train [--bf16] [--tf32] [--batch 4] [--seq 1024] [--steps 5]
Median of the timed repetitions after a warm-up, with CUDA synchronisation around each.
"""
import argparse, statistics, time
import torch


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize(); t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(); times.append(time.perf_counter() - t0)
    return statistics.median(times)


def generate(args):
    from transformers import GPT2Config, GPT2LMHeadModel
    model = GPT2LMHeadModel(GPT2Config()).cuda().eval()
    for batch in (int(b) for b in args.batch.split(",")):
        prompt = torch.randint(0, 50257, (batch, 16), device="cuda")
        def run():
            # --bf16: matmuls in bf16 under autocast, like `archer bench generate --precision bf16`.
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.bf16):
                model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, temperature=1.0,
                               top_k=0, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                               pad_token_id=0)
        s = timed(run, 1, 3)
        print(f"transformers generate gpt2 B{batch} new={args.new_tokens} bf16={int(args.bf16)}: {s*1e3:9.1f} ms "
              f"{batch*args.new_tokens/s:10.0f} tokens/s", flush=True)


def train(args):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    config = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=args.seq,
                         tie_word_embeddings=True, rope_theta=1e6, attn_implementation="eager")
    model = Qwen2ForCausalLM(config).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1, foreach=True)
    idx = torch.randint(0, config.vocab_size, (args.batch, args.seq), device="cuda")
    params = sum(p.numel() for p in model.parameters())
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(input_ids=idx, labels=idx).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    s = timed(step, 2, args.steps)
    tokens = args.batch * args.seq
    print(f"transformers train qwen2.5-0.5b bf16={int(args.bf16)} tf32={int(args.tf32)} params={params/1e6:.1f}M "
          f"B{args.batch} T{args.seq}: {s*1e3:9.2f} ms/step {tokens/s:10.0f} tokens/s "
          f"{6*params*tokens/s/1e12:7.2f} TFLOP/s (6·params·tokens) peak {torch.cuda.max_memory_allocated()/2**30:.2f} GiB",
          flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["generate", "train"])
    p.add_argument("--batch", default=None)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--tf32", action="store_true")
    args = p.parse_args()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    if args.mode == "generate":
        args.batch = args.batch or "64,256"
        generate(args)
    else:
        args.batch = int(args.batch or 4)
        train(args)
