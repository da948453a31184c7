"""Golden numbers for a tiny GPT-2 from an independent codebase (Hugging Face transformers + PyTorch).

Builds a tiny GPT2LMHeadModel with non-trivial random weights (every LayerNorm and bias randomised too,
so each gradient path is exercised), saves it in Hugging Face's own on-disk format (config.json +
model.safetensors, Conv1D weights [in, out], no "transformer." prefix, tied head omitted), and computes
in float64 on the CPU the mean next-token cross-entropy of a token file and the gradient of every
parameter. ArcherIlgpu's golden test loads the same folder and must reproduce these numbers.

usage: python3 make_tiny_gpt2.py OUT_DIR     (needs torch, transformers, safetensors)
"""
import json, os, sys
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(20251122)

config = GPT2Config(vocab_size=53, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                    activation_function="gelu_new", layer_norm_epsilon=1e-5,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True)
model = GPT2LMHeadModel(config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            p.copy_(1.0 + 0.3 * torch.randn_like(p))
        else:
            p.copy_(0.3 * torch.randn_like(p))

# Hugging Face GPT-2 checkpoint layout: names without the "transformer." prefix, float32.
tensors = {}
for name, p in model.state_dict().items():
    if name == "lm_head.weight" or name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
        continue
    key = name[len("transformer."):] if name.startswith("transformer.") else name
    tensors[key] = p.detach().to(torch.float32).contiguous()
save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
config.save_pretrained(out)

# Reload exactly the float32 weights that were saved, then compute in float64.
model = model.double().eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        key = name[len("transformer."):] if name.startswith("transformer.") else name
        if key in tensors:
            p.copy_(tensors[key].double())

B, T = 3, 9
tokens = torch.randint(0, config.vocab_size, (B, T), generator=torch.Generator().manual_seed(7))
with open(os.path.join(out, "tokens.txt"), "w") as f:
    for row in tokens.tolist():
        f.write(" ".join(str(t) for t in row) + "\n")

result = model(input_ids=tokens, labels=tokens)   # HF shifts labels: predicts tokens 2..n from the ones before
result.loss.backward()
grads, norms = {}, {}
for name, p in model.named_parameters():
    key = name[len("transformer."):] if name.startswith("transformer.") else name
    if key not in tensors:
        continue
    grads[key] = p.grad.detach().reshape(-1).tolist()     # same layout as the tensor in the file
    norms[key] = p.grad.norm().item()
total = torch.sqrt(sum(torch.sum(model.get_parameter(n).grad ** 2) for n, _ in model.named_parameters())).item()
golden = {
    "source": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, float64 on CPU",
    "loss": result.loss.item(),
    "tokens": B * (T - 1),
    "grad_norm": total,
    "grad_norms": norms,
    "logits_row0": result.logits[0].detach().reshape(-1).tolist(),
    "grads": grads,
}
with open(os.path.join(out, "golden.json"), "w") as f:
    json.dump(golden, f)
print(f"loss {golden['loss']:.12f} grad_norm {total:.12f} tensors {len(tensors)}")
