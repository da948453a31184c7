"""The PyTorch eager peer for the GPU benchmark: the same GPT-2-style model and training step as
ArcherIlgpu's (pre-LN blocks, fused QKV, tanh GELU, learned positions, tied head, float32, AdamW,
cross-entropy over random tokens), timed with CUDA synchronisation, median of the timed steps.

usage: python3 gpt2_step.py [--tf32] [--bf16] [--steps 20] [--shapes bench-s,bench-m,gpt2-b16,350m]
Prints one line per shape: ms/step, tokens/s, achieved TFLOP/s (6·params·tokens + attention).
Also: --matmul prints float32 matmul TFLOP/s at the model's shapes; --bf16 runs forward and loss under
bf16 autocast (float32 master weights and optimizer), the peer of a bf16 training step.
"""
import argparse, math, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPES = {  # name: (V, T, L, H, C, B)
    "bench-s": (512, 128, 4, 4, 256, 8),
    "bench-m": (8192, 256, 6, 6, 384, 4),
    "gpt2-b16": (50257, 1024, 12, 12, 768, 16),
    "350m": (50257, 1024, 24, 16, 1024, 8),
}


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        # Eager attention (no fused SDPA kernel) is PyTorch's plain path; --sdpa switches to the fused one.
        if ARGS.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
            mask = torch.ones(T, T, device=x.device, dtype=torch.bool).tril()
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = att @ v
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, V, T, L, H, C):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.h = nn.ModuleList(Block(C, H) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def step_flops(V, T, L, H, C, B, params):
    attention = L * 12 * B * T * T * C / 2      # causal: half of the 6·2·T²·C forward+backward products
    return 6 * params * B * T + attention


def bench_shape(name):
    V, T, L, H, C, B = SHAPES[name]
    model = Gpt(V, T, L, H, C).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=False, foreach=True)
    idx = torch.randint(0, V, (B, T), device="cuda")
    tgt = torch.randint(0, V, (B, T), device="cuda")
    params = sum(p.numel() for p in model.parameters())
    times = []
    for i in range(ARGS.warmup + ARGS.steps):
        torch.cuda.synchronize(); t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=ARGS.bf16):
            loss = model(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        torch.cuda.synchronize()
        if i >= ARGS.warmup:
            times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    tflops = step_flops(V, T, L, H, C, B, params) / (ms / 1e3) / 1e12
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"pytorch {name:9s} tf32={int(ARGS.tf32)} bf16={int(ARGS.bf16)} params={params/1e6:.1f}M B{B} T{T}: "
          f"{ms:9.2f} ms/step {B*T/(ms/1e3):11.0f} tokens/s {tflops:7.2f} TFLOP/s peak {peak:.2f} GiB", flush=True)
    del model, opt
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()


def bench_matmul():
    for (n, k, m) in [(16384, 768, 2304), (16384, 768, 3072), (16384, 3072, 768), (16384, 768, 50257), (4096, 4096, 4096)]:
        a = torch.randn(n, k, device="cuda"); b = torch.randn(m, k, device="cuda")
        for _ in range(3): a @ b.t()
        torch.cuda.synchronize()
        times = []
        for _ in range(10):
            torch.cuda.synchronize(); t0 = time.perf_counter(); a @ b.t(); torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1e3
        print(f"pytorch matmul tf32={int(ARGS.tf32)} {n}x{k}x{m}: {ms:8.3f} ms {2*n*k*m/(ms/1e3)/1e12:7.2f} TFLOP/s", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--sdpa", action="store_true")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--matmul", action="store_true")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--shapes", default="bench-s,bench-m,gpt2-b16,350m")
    ARGS = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = ARGS.tf32
    torch.backends.cudnn.allow_tf32 = ARGS.tf32
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    if ARGS.matmul:
        bench_matmul()
    for s in filter(None, ARGS.shapes.split(",")):
        bench_shape(s)
