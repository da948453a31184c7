"""Golden numbers for tiny Llama (plain and Llama 3.1-style scaled RoPE), Qwen2 and Qwen3 decoders from an
independent float64 implementation.

No torch, numpy or transformers: plain Python 3.11 standard library, so the numbers do not come from any
code the C# stack shares. For each model this writes a Hugging Face-style folder OUT_ROOT/golden-tiny-<type>/
with config.json (the form transformers 4.5x saves and the hub checkpoints carry), the weights as safetensors
with Hugging Face names and shapes, tokens.txt (B rows of T+1 ids) and golden.json: the mean next-token
cross-entropy over the B*T positions (Hugging Face's labels=input_ids), every logit, and the gradient of every
stored tensor, all float64.

The forward follows modeling_llama.py / modeling_qwen2.py / modeling_qwen3.py: pre-norm blocks with RMSNorm
(x * rsqrt(mean(x^2) + eps)) * w; q/k/v projections (Qwen2: with biases); Qwen3: RMSNorm of each q and k head
BEFORE RoPE; RoPE on the two halves of each head (rotate_half), inv_freq = theta^(-2i/D) (golden-tiny-llama3:
then rescaled by rope_type "llama3", see llama3_scaled_frequencies); grouped-query
attention (query head h reads kv head h // (H/Hkv)); causal softmax(q.k / sqrt(D)); o_proj; residual;
SwiGLU MLP down(silu(gate(x)) * up(x)); final RMSNorm; lm_head (or the tied embedding).

Gradients come from a small tape-based reverse-mode autodiff over scalars (below), not from a hand-derived
backward; a float-only run of the same forward checks the autodiff against central finite differences on one
element of every tensor (the script asserts relative error < 1e-6 and prints the table).

usage: python3 make_tiny_llama.py OUT_ROOT [NAME ...]     (NAME: llama, qwen2, qwen3, llama3; default all)
"""
import json
import math
import os
import random
import struct
import sys
import time

B, T = 3, 9                     # tokens.txt holds T+1 ids a row: position t predicts token t+1
FD_STEP = 1e-5                  # central differences: truncation ~h^2, rounding ~1e-15/h, both < 1e-9 here
FD_TOLERANCE = 1e-6

# ---------------------------------------------------------------------------------------------------------------
# Reverse-mode autodiff on scalars. Every operation appends its node to a tape in creation order; since a node's
# inputs always exist before it, walking the tape backwards is a valid reverse topological order (no recursion).


class Var:
    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = data
        self.grad = 0.0

    def backward(self):         # leaves have nothing to push
        pass


TAPE = []


class Add(Var):
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        super().__init__(a.data + b.data)
        self.a, self.b = a, b
        TAPE.append(self)

    def backward(self):
        self.a.grad += self.grad
        self.b.grad += self.grad


class Mul(Var):
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        super().__init__(a.data * b.data)
        self.a, self.b = a, b
        TAPE.append(self)

    def backward(self):
        self.a.grad += self.b.data * self.grad
        self.b.grad += self.a.data * self.grad


class Dot(Var):
    """sum_i xs[i] * ys[i] over two lists of nodes (a matrix row times a vector)."""
    __slots__ = ("xs", "ys")

    def __init__(self, xs, ys):
        s = 0.0
        for x, y in zip(xs, ys):
            s += x.data * y.data
        super().__init__(s)
        self.xs, self.ys = xs, ys
        TAPE.append(self)

    def backward(self):
        g = self.grad
        for x, y in zip(self.xs, self.ys):
            x.grad += y.data * g
            y.grad += x.data * g


class LinComb(Var):
    """sum_i cs[i] * xs[i] with constant coefficients."""
    __slots__ = ("xs", "cs")

    def __init__(self, xs, cs):
        s = 0.0
        for x, c in zip(xs, cs):
            s += c * x.data
        super().__init__(s)
        self.xs, self.cs = xs, cs
        TAPE.append(self)

    def backward(self):
        g = self.grad
        for x, c in zip(self.xs, self.cs):
            x.grad += c * g


class AddConst(Var):
    __slots__ = ("a",)

    def __init__(self, a, c):
        super().__init__(a.data + c)
        self.a = a
        TAPE.append(self)

    def backward(self):
        self.a.grad += self.grad


class Exp(Var):
    __slots__ = ("a",)

    def __init__(self, a):
        super().__init__(math.exp(a.data))
        self.a = a
        TAPE.append(self)

    def backward(self):
        self.a.grad += self.data * self.grad


class Log(Var):
    __slots__ = ("a",)

    def __init__(self, a):
        super().__init__(math.log(a.data))
        self.a = a
        TAPE.append(self)

    def backward(self):
        self.a.grad += self.grad / self.a.data


class PowConst(Var):
    __slots__ = ("a", "p")

    def __init__(self, a, p):
        super().__init__(a.data ** p)
        self.a, self.p = a, p
        TAPE.append(self)

    def backward(self):
        self.a.grad += self.p * self.a.data ** (self.p - 1.0) * self.grad


def backpropagate(out):
    out.grad = 1.0
    for node in reversed(TAPE):
        node.backward()


class GraphOps:
    """The forward's primitives on autodiff nodes."""
    dot = staticmethod(Dot)
    lincomb = staticmethod(LinComb)
    add = staticmethod(Add)
    mul = staticmethod(Mul)
    add_const = staticmethod(AddConst)
    exp = staticmethod(Exp)
    log = staticmethod(Log)
    pow_const = staticmethod(PowConst)

    @staticmethod
    def value(a):
        return a.data


class FloatOps:
    """The same primitives on plain floats, in the same order of operations (bitwise the same values)."""

    @staticmethod
    def dot(xs, ys):
        s = 0.0
        for x, y in zip(xs, ys):
            s += x * y
        return s

    @staticmethod
    def lincomb(xs, cs):
        s = 0.0
        for x, c in zip(xs, cs):
            s += c * x
        return s

    add = staticmethod(lambda a, b: a + b)
    mul = staticmethod(lambda a, b: a * b)
    add_const = staticmethod(lambda a, c: a + c)
    exp = staticmethod(math.exp)
    log = staticmethod(math.log)
    pow_const = staticmethod(lambda a, p: a ** p)
    value = staticmethod(lambda a: a)


# ---------------------------------------------------------------------------------------------------------------
# The decoder, written once over an ops object.


def rms_norm(ops, x, w, eps):
    mean_square = ops.lincomb([ops.dot(x, x)], [1.0 / len(x)])
    inv_rms = ops.pow_const(ops.add_const(mean_square, eps), -0.5)
    return [ops.mul(w[i], ops.mul(x[i], inv_rms)) for i in range(len(x))]


def linear(ops, weight, bias, x, n_out):
    """nn.Linear: weight is [n_out, n_in] row-major, y = W x (+ b)."""
    n_in = len(x)
    y = [ops.dot(weight[o * n_in:(o + 1) * n_in], x) for o in range(n_out)]
    if bias is not None:
        y = [ops.add(y[o], bias[o]) for o in range(n_out)]
    return y


def silu(ops, a):
    sigmoid = ops.pow_const(ops.add_const(ops.exp(ops.lincomb([a], [-1.0])), 1.0), -1.0)
    return ops.mul(a, sigmoid)


def llama3_scaled_frequencies(inv_freq, scaling):
    """Llama 3.1's rope scaling as read from transformers' modeling_rope_utils.py (_compute_llama3_parameters): with
    wavelength w = 2 pi / f, pairs turning slower than the pre-training context / low_freq_factor (long w) are
    slowed down factor times, pairs faster than context / high_freq_factor are kept, and in between the rate
    is blended linearly in context / w: s = (context / w - low) / (high - low), f' = (1 - s) f / factor + s f.
    Returns the new frequencies and each pair's band ("kept", "blended" or "scaled")."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    long_wavelength, short_wavelength = context / low, context / high
    out, bands = [], []
    for f in inv_freq:
        w = 2.0 * math.pi / f
        if w < short_wavelength:
            out.append(f)
            bands.append("kept")
        elif w > long_wavelength:
            out.append(f / factor)
            bands.append("scaled")
        else:
            s = (context / w - low) / (high - low)
            out.append((1.0 - s) * f / factor + s * f)
            bands.append("blended")
    return out, bands


def check_llama3_bands(cfg):
    """The llama3 golden must exercise all three bands, each pair far enough (5 %) from a band edge that float32
    rounding of a wavelength in the tested code cannot move it to another band. Prints the table."""
    d, scaling = cfg["head_dim"], cfg["rope_scaling"]
    inv_freq = [1.0 / cfg["rope_theta"] ** ((2 * i) / d) for i in range(d // 2)]
    scaled, bands = llama3_scaled_frequencies(inv_freq, scaling)
    context = scaling["original_max_position_embeddings"]
    edges = (context / scaling["high_freq_factor"], context / scaling["low_freq_factor"])
    print(f"  llama3 rope bands (wavelength edges {edges[0]:g} and {edges[1]:g}):")
    for i, (f, g, band) in enumerate(zip(inv_freq, scaled, bands)):
        w = 2.0 * math.pi / f
        print(f"    pair {i}: wavelength {w:10.4f}  inv_freq {f:.10f} -> {g:.10f}  {band}")
        assert all(abs(w / e - 1.0) > 0.05 for e in edges), f"pair {i}: wavelength {w} is within 5 % of a band edge"
    assert {"kept", "blended", "scaled"} <= set(bands), f"not every band is exercised: {bands}"


def rope_tables(cfg):
    """cos/sin [T][D]: frequencies of the first half repeated for the second (cat(freqs, freqs))."""
    d = cfg["head_dim"]
    half = d // 2
    inv_freq = [1.0 / cfg["rope_theta"] ** ((2 * i) / d) for i in range(half)]
    if cfg.get("rope_scaling") is not None:
        inv_freq, _ = llama3_scaled_frequencies(inv_freq, cfg["rope_scaling"])
    cos = [[math.cos(t * inv_freq[j % half]) for j in range(d)] for t in range(T)]
    sin = [[math.sin(t * inv_freq[j % half]) for j in range(d)] for t in range(T)]
    return cos, sin


def rope(ops, x, cos, sin):
    """x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x[half:], x[:half])."""
    d = len(x)
    half = d // 2
    out = []
    for j in range(d):
        if j < half:
            out.append(ops.lincomb([x[j], x[j + half]], [cos[j], -sin[j]]))
        else:
            out.append(ops.lincomb([x[j], x[j - half]], [cos[j], sin[j]]))
    return out


def softmax_weights(ops, scores):
    # Subtracting the (constant) max changes neither the value nor the derivative of softmax.
    m = max(ops.value(s) for s in scores)
    e = [ops.exp(ops.add_const(s, -m)) for s in scores]
    inv_total = ops.pow_const(ops.lincomb(e, [1.0] * len(e)), -1.0)
    return [ops.mul(ei, inv_total) for ei in e]


def attention(ops, cfg, p, layer, h, cos, sin):
    """h: [T][C] normed inputs of one sequence; returns o_proj output [T][C]."""
    C, H, Hkv, D = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    pre = f"model.layers.{layer}.self_attn."
    bias = cfg["_qkv_bias"]
    qs, ks, vs = [], [], []
    for t in range(T):
        q = linear(ops, p[pre + "q_proj.weight"], p[pre + "q_proj.bias"] if bias else None, h[t], H * D)
        k = linear(ops, p[pre + "k_proj.weight"], p[pre + "k_proj.bias"] if bias else None, h[t], Hkv * D)
        v = linear(ops, p[pre + "v_proj.weight"], p[pre + "v_proj.bias"] if bias else None, h[t], Hkv * D)
        q_heads = [q[i * D:(i + 1) * D] for i in range(H)]
        k_heads = [k[i * D:(i + 1) * D] for i in range(Hkv)]
        if cfg["_qk_norm"]:
            eps = cfg["rms_norm_eps"]
            q_heads = [rms_norm(ops, x, p[pre + "q_norm.weight"], eps) for x in q_heads]
            k_heads = [rms_norm(ops, x, p[pre + "k_norm.weight"], eps) for x in k_heads]
        qs.append([rope(ops, x, cos[t], sin[t]) for x in q_heads])
        ks.append([rope(ops, x, cos[t], sin[t]) for x in k_heads])
        vs.append([v[i * D:(i + 1) * D] for i in range(Hkv)])
    group = H // Hkv
    scale = D ** -0.5
    out = []
    for t in range(T):
        heads = []
        for hq in range(H):
            kv = hq // group
            scores = [ops.lincomb([ops.dot(qs[t][hq], ks[j][kv])], [scale]) for j in range(t + 1)]
            w = softmax_weights(ops, scores)
            heads.extend(ops.dot(w, [vs[j][kv][d] for j in range(t + 1)]) for d in range(D))
        out.append(linear(ops, p[pre + "o_proj.weight"], None, heads, C))
    return out


def mlp(ops, cfg, p, layer, x):
    pre = f"model.layers.{layer}.mlp."
    I, C = cfg["intermediate_size"], cfg["hidden_size"]
    gate = linear(ops, p[pre + "gate_proj.weight"], None, x, I)
    up = linear(ops, p[pre + "up_proj.weight"], None, x, I)
    act = [ops.mul(silu(ops, gate[i]), up[i]) for i in range(I)]
    return linear(ops, p[pre + "down_proj.weight"], None, act, C)


def cross_entropy(ops, logits, target):
    m = max(ops.value(z) for z in logits)
    total = ops.lincomb([ops.exp(ops.add_const(z, -m)) for z in logits], [1.0] * len(logits))
    log_sum_exp = ops.add_const(ops.log(total), m)
    return ops.lincomb([log_sum_exp, logits[target]], [1.0, -1.0])


def forward(ops, cfg, p, tokens):
    """Mean next-token cross-entropy over B*T positions and the logits [B*T][V]."""
    C, V, L, eps = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"], cfg["rms_norm_eps"]
    cos, sin = rope_tables(cfg)
    embed = p["model.embed_tokens.weight"]
    head = embed if cfg["tie_word_embeddings"] else p["lm_head.weight"]
    losses, all_logits = [], []
    for row in tokens:
        x = [embed[tok * C:(tok + 1) * C] for tok in row[:T]]
        for layer in range(L):
            pre = f"model.layers.{layer}."
            h = [rms_norm(ops, xt, p[pre + "input_layernorm.weight"], eps) for xt in x]
            a = attention(ops, cfg, p, layer, h, cos, sin)
            x = [[ops.add(xt[i], at[i]) for i in range(C)] for xt, at in zip(x, a)]
            h = [rms_norm(ops, xt, p[pre + "post_attention_layernorm.weight"], eps) for xt in x]
            m = [mlp(ops, cfg, p, layer, ht) for ht in h]
            x = [[ops.add(xt[i], mt[i]) for i in range(C)] for xt, mt in zip(x, m)]
        for t in range(T):
            z = linear(ops, head, None, rms_norm(ops, x[t], p["model.norm.weight"], eps), V)
            all_logits.append(z)
            losses.append(cross_entropy(ops, z, row[t + 1]))
    loss = ops.lincomb(losses, [1.0 / len(losses)] * len(losses))
    return loss, all_logits


# ---------------------------------------------------------------------------------------------------------------
# Models, weights, files.

MODELS = {
    "llama": dict(
        architectures=["LlamaForCausalLM"], vocab_size=61, hidden_size=24, intermediate_size=40,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=6,
        max_position_embeddings=32, rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16", seed=20251201,
        _qkv_bias=False, _qk_norm=False),
    "qwen2": dict(
        architectures=["Qwen2ForCausalLM"], vocab_size=53, hidden_size=32, intermediate_size=48,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
        max_position_embeddings=32, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        bos_token_id=52, eos_token_id=52, torch_dtype="float32", seed=20251202,
        _qkv_bias=True, _qk_norm=False),
    "qwen3": dict(
        architectures=["Qwen3ForCausalLM"], vocab_size=47, hidden_size=32, intermediate_size=40,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=12,
        max_position_embeddings=32, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        bos_token_id=44, eos_token_id=46, torch_dtype="float32", seed=20251203,
        _qkv_bias=False, _qk_norm=True),
    # Llama 3.1/3.2's rope: D 16 gives 8 pairs; theta 200 spreads their wavelengths 2 pi * 200^(i/8) = 6.3, 12.2,
    # 23.6, 45.8, ... over the band edges 32/4 = 8 and 32/1 = 32: one pair kept, two blended, five scaled.
    # (With original_max_position_embeddings 16 the short edge would be 4, below every wavelength >= 2 pi:
    # no pair would be kept.)
    "llama3": dict(
        model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=43, hidden_size=32,
        intermediate_size=40, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=64, rope_theta=200.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 32},
        bos_token_id=40, eos_token_id=41, torch_dtype="float32", seed=20251204,
        _qkv_bias=False, _qk_norm=False),
}


def hf_config(model_type, cfg):
    """config.json as transformers 4.5x's save_pretrained writes it (sorted keys, indent 2)."""
    common = {
        "architectures": cfg["architectures"], "attention_dropout": 0.0,
        "bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"], "hidden_act": "silu",
        "hidden_size": cfg["hidden_size"], "initializer_range": 0.02,
        "intermediate_size": cfg["intermediate_size"], "max_position_embeddings": cfg["max_position_embeddings"],
        "model_type": model_type, "num_attention_heads": cfg["num_attention_heads"],
        "num_hidden_layers": cfg["num_hidden_layers"], "num_key_value_heads": cfg["num_key_value_heads"],
        "rms_norm_eps": cfg["rms_norm_eps"], "rope_scaling": cfg.get("rope_scaling"), "rope_theta": cfg["rope_theta"],
        "tie_word_embeddings": cfg["tie_word_embeddings"], "torch_dtype": cfg["torch_dtype"],
        "transformers_version": "4.51.3", "use_cache": True, "vocab_size": cfg["vocab_size"],
    }
    if model_type == "llama":
        common.update({"attention_bias": False, "head_dim": cfg["head_dim"], "mlp_bias": False,
                       "pretraining_tp": 1})
    elif model_type == "qwen2":
        # Qwen2Config has no head_dim: the model uses hidden_size // num_attention_heads (here 8).
        common.update({"max_window_layers": 28, "sliding_window": None, "use_sliding_window": False})
    else:
        common.update({"attention_bias": False, "head_dim": cfg["head_dim"], "max_window_layers": 28,
                       "sliding_window": None, "use_sliding_window": False})
    return common


def tensor_shapes(cfg):
    """Hugging Face names and [out, in] shapes, in the model's module order."""
    V, C, I = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    H, Hkv, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    shapes = {"model.embed_tokens.weight": [V, C]}
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{layer}."
        shapes[pre + "input_layernorm.weight"] = [C]
        shapes[pre + "self_attn.q_proj.weight"] = [H * D, C]
        if cfg["_qkv_bias"]:
            shapes[pre + "self_attn.q_proj.bias"] = [H * D]
        shapes[pre + "self_attn.k_proj.weight"] = [Hkv * D, C]
        if cfg["_qkv_bias"]:
            shapes[pre + "self_attn.k_proj.bias"] = [Hkv * D]
        shapes[pre + "self_attn.v_proj.weight"] = [Hkv * D, C]
        if cfg["_qkv_bias"]:
            shapes[pre + "self_attn.v_proj.bias"] = [Hkv * D]
        if cfg["_qk_norm"]:
            shapes[pre + "self_attn.q_norm.weight"] = [D]
            shapes[pre + "self_attn.k_norm.weight"] = [D]
        shapes[pre + "self_attn.o_proj.weight"] = [C, H * D]
        shapes[pre + "post_attention_layernorm.weight"] = [C]
        shapes[pre + "mlp.gate_proj.weight"] = [I, C]
        shapes[pre + "mlp.up_proj.weight"] = [I, C]
        shapes[pre + "mlp.down_proj.weight"] = [C, I]
    shapes["model.norm.weight"] = [C]
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = [V, C]
    return shapes


def to_float32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def to_bfloat16(x):
    """Round to nearest even bf16 (through float32), returned as the float64 it represents."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF
    return struct.unpack("<f", struct.pack("<I", bits << 16))[0]


def random_weights(cfg, shapes):
    """Matmul weights N(0, (0.3*sqrt(16/fan_in))^2) so a projection of unit-RMS input has std ~1.2 (as in the
    GPT-2 golden, 0.3 at C=16); norm weights 1 + 0.3 N(0,1); biases 0.3 N(0,1). Rounded to the stored dtype."""
    rng = random.Random(cfg["seed"])
    store = to_bfloat16 if cfg["torch_dtype"] == "bfloat16" else to_float32
    weights = {}
    for name, shape in shapes.items():
        n = math.prod(shape)
        if name.endswith("norm.weight"):
            values = [1.0 + 0.3 * rng.gauss(0.0, 1.0) for _ in range(n)]
        elif name.endswith(".bias"):
            values = [0.3 * rng.gauss(0.0, 1.0) for _ in range(n)]
        else:
            std = 0.3 * math.sqrt(16.0 / shape[-1])
            values = [rng.gauss(0.0, std) for _ in range(n)]
        weights[name] = [store(v) for v in values]
    return weights


def safetensors_bytes(tensors, dtype):
    """tensors: {name: (shape, flat values)}. 8-byte LE header length, JSON header padded with spaces to a
    multiple of 8 (so the data is aligned), then the little-endian data in header order."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (shape, values) in tensors.items():
        if dtype == "F32":
            blob = struct.pack(f"<{len(values)}f", *values)
        else:
            blob = b"".join(struct.pack("<H", struct.unpack("<I", struct.pack("<f", v))[0] >> 16) for v in values)
            assert all(to_bfloat16(v) == v for v in values), name
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs), offset


def write_weights(folder, cfg, shapes, weights):
    if cfg["torch_dtype"] == "float32":
        data, _ = safetensors_bytes({n: (shapes[n], weights[n]) for n in shapes}, "F32")
        with open(os.path.join(folder, "model.safetensors"), "wb") as f:
            f.write(data)
        return
    # Two shards split by layer: embedding + layer 0, then layer 1 + final norm + head.
    shard_names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    split_layer = cfg["num_hidden_layers"] // 2

    def shard_of(name):
        if name.startswith("model.layers."):
            return 0 if int(name.split(".")[2]) < split_layer else 1
        return 0 if name == "model.embed_tokens.weight" else 1

    weight_map, total = {}, 0
    for s, file_name in enumerate(shard_names):
        names = [n for n in shapes if shard_of(n) == s]
        data, size = safetensors_bytes({n: (shapes[n], weights[n]) for n in names}, "BF16")
        with open(os.path.join(folder, file_name), "wb") as f:
            f.write(data)
        total += size
        weight_map.update({n: file_name for n in names})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def read_safetensors(path):
    """Independent read-back: {name: (dtype, shape, float values)}; checks the offsets tile the data exactly."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header.pop("__metadata__") == {"format": "pt"}
    data = raw[8 + n:]
    spans = sorted(tuple(e["data_offsets"]) for e in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(data), path
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), path
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        chunk = data[begin:end]
        if e["dtype"] == "F32":
            values = list(struct.unpack(f"<{len(chunk) // 4}f", chunk))
        else:
            halves = struct.unpack(f"<{len(chunk) // 2}H", chunk)
            values = [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
        assert len(values) == math.prod(e["shape"]), name
        out[name] = (e["dtype"], e["shape"], values)
    return out


def check_files(folder, cfg, shapes, weights):
    """The folder holds exactly the tensors the numbers were computed from, with the right names and shapes."""
    index_path = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        files = sorted(set(index["weight_map"].values()))
    else:
        index, files = None, ["model.safetensors"]
    found, data_bytes = {}, 0
    for file_name in files:
        tensors = read_safetensors(os.path.join(folder, file_name))
        for name, (dtype, shape, values) in tensors.items():
            assert name not in found and (index is None or index["weight_map"][name] == file_name), name
            found[name] = (dtype, shape, values)
            data_bytes += len(values) * (4 if dtype == "F32" else 2)
    if index is not None:
        assert index["metadata"]["total_size"] == data_bytes
    want_dtype = "BF16" if cfg["torch_dtype"] == "bfloat16" else "F32"
    assert set(found) == set(shapes), set(found) ^ set(shapes)
    for name, (dtype, shape, values) in found.items():
        assert dtype == want_dtype and shape == shapes[name] and values == weights[name], name


def check_causal(cfg, weights, tokens, logits):
    """Changing the last input token of a row leaves every earlier position's logits bitwise unchanged."""
    V = cfg["vocab_size"]
    changed = [list(row) for row in tokens]
    changed[0][T - 1] = (changed[0][T - 1] + 1) % V
    _, other = forward(FloatOps, cfg, weights, changed)
    other = [z for row in other for z in row]
    assert other[:(T - 1) * V] == logits[:(T - 1) * V], "a position sees a later token"
    assert other[(T - 1) * V:T * V] != logits[(T - 1) * V:T * V], "the last position ignores its own token"
    assert other[T * V:] == logits[T * V:], "rows are not independent"


def loss_and_gradients(cfg, weights, tokens):
    TAPE.clear()
    params = {name: [Var(v) for v in values] for name, values in weights.items()}
    loss, logits = forward(GraphOps, cfg, params, tokens)
    backpropagate(loss)
    grads = {name: [v.grad for v in nodes] for name, nodes in params.items()}
    logits = [z.data for row in logits for z in row]
    value = loss.data
    TAPE.clear()
    return value, logits, grads


def finite_difference_check(cfg, weights, tokens, loss, grads):
    """Central differences of the float-only forward on the largest-gradient element of every tensor."""
    float_loss, _ = forward(FloatOps, cfg, weights, tokens)
    assert float_loss == loss, f"float forward {float_loss!r} differs from the graph's {loss!r}"
    rows, worst = [], 0.0
    for name, g in grads.items():
        i = max(range(len(g)), key=lambda k: abs(g[k]))
        w = list(weights[name])
        saved = w[i]
        w[i] = saved + FD_STEP
        plus, _ = forward(FloatOps, cfg, {**weights, name: w}, tokens)
        w[i] = saved - FD_STEP
        minus, _ = forward(FloatOps, cfg, {**weights, name: w}, tokens)
        fd = (plus - minus) / (2 * FD_STEP)
        rel = abs(fd - g[i]) / max(abs(fd), abs(g[i]))
        worst = max(worst, rel)
        rows.append({"tensor": name, "index": i, "autodiff": g[i], "finite_difference": fd, "rel_err": rel})
    return rows, worst


def make(name, cfg, out_root):
    started = time.time()
    model_type = cfg.get("model_type", name)
    folder = os.path.join(out_root, f"golden-tiny-{name}")
    os.makedirs(folder, exist_ok=True)
    if cfg.get("rope_scaling") is not None:
        check_llama3_bands(cfg)
    shapes = tensor_shapes(cfg)
    weights = random_weights(cfg, shapes)
    rng = random.Random(cfg["seed"] + 1)
    tokens = [[rng.randrange(cfg["vocab_size"]) for _ in range(T + 1)] for _ in range(B)]

    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf_config(model_type, cfg), f, indent=2, sort_keys=True)
        f.write("\n")
    write_weights(folder, cfg, shapes, weights)
    with open(os.path.join(folder, "tokens.txt"), "w") as f:
        for row in tokens:
            f.write(" ".join(str(t) for t in row) + "\n")

    check_files(folder, cfg, shapes, weights)

    loss, logits, grads = loss_and_gradients(cfg, weights, tokens)
    check_causal(cfg, weights, tokens, logits)
    checks, worst = finite_difference_check(cfg, weights, tokens, loss, grads)
    norms = {n: math.sqrt(sum(v * v for v in g)) for n, g in grads.items()}
    golden = {
        "source": "benchmarks/golden/make_tiny_llama.py: independent float64 forward + scalar reverse-mode "
                  "autodiff (Python standard library, no transformers)",
        "loss": loss,
        "tokens": B * T,
        "grad_norm": math.sqrt(sum(v * v for v in norms.values())),
        "grad_norms": norms,
        "logits": logits,
        "grads": grads,
        "finite_difference_check": checks,
    }
    with open(os.path.join(folder, "golden.json"), "w") as f:
        json.dump(golden, f)

    print(f"golden-tiny-{name}: loss {loss:.15f} grad_norm {golden['grad_norm']:.15f} "
          f"tensors {len(shapes)} ({time.time() - started:.1f} s)")
    for c in checks:
        print(f"  {c['tensor']:<45} [{c['index']:>4}] autodiff {c['autodiff']: .12e} "
              f"fd {c['finite_difference']: .12e} rel {c['rel_err']:.1e}")
    print(f"  worst relative error {worst:.2e} (tolerance {FD_TOLERANCE:g})")
    assert worst < FD_TOLERANCE, f"{name}: autodiff disagrees with finite differences ({worst:.2e})"


def main():
    if len(sys.argv) < 2 or any(name not in MODELS for name in sys.argv[2:]):
        sys.exit(__doc__)
    started = time.time()
    for name in sys.argv[2:] or list(MODELS):
        make(name, MODELS[name], sys.argv[1])
    print(f"total {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
