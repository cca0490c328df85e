#!/usr/bin/env python3
"""An independent reference forward pass, used only by the tests.

Written from the published architecture descriptions (Llama: RMSNorm, RoPE on
consecutive pairs, SwiGLU, GQA; Qwen2: q/k/v biases, NEOX rope; Phi-3: fused
qkv and gate|up, NEOX rope; Llama 3: rope_freqs divisors; Gemma 2: embedding
times sqrt(d), GeGLU, norms after attention and FFN, soft-capped scores and
logits, a sliding window on even layers), with its own GGUF
reader, in float64 NumPy. It mirrors the engine's two deliberate numeric
choices so the comparison can be tight: activations entering an int8 product
are quantized per 32-block as ggml does (per 256 with an fp32 scale for the
K-quant weights), and K/V are rounded to the cache type.

usage: reference_forward.py MODEL.gguf TOKENS(comma-separated) KV_TYPE(f16|f32) [N_CTX]
(N_CTX: the engine's KV capacity, default the token count) prints one line per position: the logits, space-separated.
       reference_forward.py --dump MODEL.gguf TENSOR ROWS
prints the first ROWS rows of a tensor as this file decodes them (float32).
       reference_forward.py --trace MODEL.gguf TOKENS KV_TYPE LAYER HEAD
prints what `wim logits --trace` shows: "resid S n_0 .. n_last", the L2 norm of the
residual stream at stage S (0 the embedding, 1 + 2l after layer l's attention, 2 + 2l
after its FFN) at every position, then "attn Q w_0 .. w_Q", the softmax weights head
HEAD of layer LAYER gives each key (0 where the mask hides it).
"""
import os
import struct
import sys

# One BLAS thread: a threaded float64 product may sum in another order from run
# to run, and an activation on an 8-bit rounding midpoint then flips between runs.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

VT_SIZES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class Reader:
    def __init__(self, buf):
        self.buf, self.off = buf, 0

    def scalar(self, fmt):
        v = struct.unpack_from("<" + fmt, self.buf, self.off)[0]
        self.off += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.scalar("Q")
        s = self.buf[self.off:self.off + n].decode("utf-8", "replace")
        self.off += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.scalar("I"), self.scalar("Q")
            return [self.value(et) for _ in range(n)]
        return self.scalar(VT_SIZES[t])


def gguf_layout(buf):
    """The header: metadata {key: value}, where each value starts {key: (type, offset)},
    the tensors [(name, ne, type, offset in the data)] and where the data starts."""
    r = Reader(buf)
    assert buf[:4] == b"GGUF"
    r.off = 4
    r.scalar("I")
    n_t, n_kv = r.scalar("Q"), r.scalar("Q")
    meta, where = {}, {}
    for _ in range(n_kv):
        k = r.string()
        t = r.scalar("I")
        where[k] = (t, r.off)
        meta[k] = r.value(t)
    infos = []
    for _ in range(n_t):
        name = r.string()
        nd = r.scalar("I")
        ne = [r.scalar("Q") for _ in range(nd)]
        infos.append((name, ne, r.scalar("I"), r.scalar("Q")))
    align = meta.get("general.alignment", 32)
    return meta, where, infos, (r.off + align - 1) // align * align


def load_gguf(path):
    buf = open(path, "rb").read()
    meta, _, infos, data = gguf_layout(buf)
    tensors = {}
    for name, ne, t, off in infos:
        n = int(np.prod(ne))
        start = data + off
        if t == 0:
            a = np.frombuffer(buf, np.float32, n, start).astype(np.float64)
        elif t == 1:
            a = np.frombuffer(buf, np.float16, n, start).astype(np.float64)
        elif t == 30:
            u = np.frombuffer(buf, np.uint16, n, start).astype(np.uint32) << 16
            a = u.view(np.float32).astype(np.float64)
        elif t == 8:
            blocks = np.frombuffer(buf, np.dtype([("d", "<f2"), ("q", "i1", 32)]), n // 32, start)
            a = (blocks["d"].astype(np.float64)[:, None] * blocks["q"]).reshape(-1)
        elif t in DEQUANT:
            dtype, fn = DEQUANT[t]
            a = fn(np.frombuffer(buf, dtype, n // (256 if t >= 12 else 32), start)).astype(np.float64)
        else:
            raise SystemExit(f"unsupported tensor type {t}")
        tensors[name] = (a.reshape(list(reversed(ne))), t)
    return meta, tensors


# ---- block-quantized weight types, from the GGUF format description ----
# Every function takes the array of blocks and returns the float32 weights, in
# ggml's order of float operations (so the results can be compared bit for bit).
F32 = np.float32


def f32(a):
    return a.astype(F32)


def nibbles(qs):
    """16 bytes -> 32 values: the low nibbles first, then the high ones."""
    return np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.int32)


def fifth_bits(qh):
    """A little-endian 32-bit word -> bit i of element i."""
    return ((qh[:, None].astype(np.uint64) >> np.arange(32, dtype=np.uint64)) & 1).astype(np.int32)


def deq_q4_0(b):
    return (f32(nibbles(b["qs"]) - 8) * f32(b["d"])[:, None]).reshape(-1)


def deq_q4_1(b):
    return (f32(nibbles(b["qs"])) * f32(b["d"])[:, None] + f32(b["m"])[:, None]).reshape(-1)


def deq_q5_0(b):
    q = nibbles(b["qs"]) | (fifth_bits(b["qh"]) << 4)
    return (f32(q - 16) * f32(b["d"])[:, None]).reshape(-1)


def deq_q5_1(b):
    q = nibbles(b["qs"]) | (fifth_bits(b["qh"]) << 4)
    return (f32(q) * f32(b["d"])[:, None] + f32(b["m"])[:, None]).reshape(-1)


def k_scales(s):
    """The 12 scale bytes of Q4_K/Q5_K -> 8 six-bit scales and 8 six-bit mins."""
    s = s.astype(np.int32)
    sc = np.empty((len(s), 8), np.int32)
    mn = np.empty((len(s), 8), np.int32)
    sc[:, :4], mn[:, :4] = s[:, 0:4] & 63, s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, mn


def k_values(qs, qh=None):
    """128 nibble bytes (+ 32 high-bit bytes) -> 8 sub-blocks of 32 values: group g of
    32 bytes holds sub-block 2g in its low nibbles and 2g+1 in its high ones."""
    g = qs.reshape(-1, 4, 32).astype(np.int32)
    q = np.stack([g & 0xF, g >> 4], axis=2).reshape(-1, 8, 32)
    if qh is not None:
        q |= ((qh[:, None, :].astype(np.int32) >> np.arange(8)[None, :, None]) & 1) << 4
    return q


def deq_k45(b, qh):
    sc, mn = k_scales(b["scales"])
    q = k_values(b["qs"], qh)
    d1 = f32(b["d"])[:, None] * f32(sc)
    m1 = f32(b["dmin"])[:, None] * f32(mn)
    return (d1[:, :, None] * f32(q) - m1[:, :, None]).reshape(-1)


def deq_q6_k(b):
    ql = b["ql"].reshape(-1, 2, 64).astype(np.int32)
    qh = b["qh"].reshape(-1, 2, 32).astype(np.int32)
    lo = np.concatenate([ql[:, :, :32] & 0xF, ql[:, :, 32:] & 0xF, ql[:, :, :32] >> 4,
                         ql[:, :, 32:] >> 4], axis=2)  # 128 values per half, in order
    hi = np.concatenate([(qh >> s) & 3 for s in (0, 2, 4, 6)], axis=2)
    q = (lo | (hi << 4)).reshape(-1, 16, 16) - 32
    d = f32(b["d"])[:, None] * f32(b["sc"])
    return (d[:, :, None] * f32(q)).reshape(-1)


H = "<f2"
DEQUANT = {
    2: (np.dtype([("d", H), ("qs", "u1", 16)]), deq_q4_0),
    3: (np.dtype([("d", H), ("m", H), ("qs", "u1", 16)]), deq_q4_1),
    6: (np.dtype([("d", H), ("qh", "<u4"), ("qs", "u1", 16)]), deq_q5_0),
    7: (np.dtype([("d", H), ("m", H), ("qh", "<u4"), ("qs", "u1", 16)]), deq_q5_1),
    12: (np.dtype([("d", H), ("dmin", H), ("scales", "u1", 12), ("qs", "u1", 128)]),
         lambda b: deq_k45(b, None)),
    13: (np.dtype([("d", H), ("dmin", H), ("scales", "u1", 12), ("qh", "u1", 32),
                   ("qs", "u1", 128)]), lambda b: deq_k45(b, b["qh"])),
    14: (np.dtype([("ql", "u1", 128), ("qh", "u1", 64), ("sc", "i1", 16), ("d", H)]), deq_q6_k),
}
QUANTIZED = {8} | set(DEQUANT)
# REF_FLOAT_ACTIVATIONS=1: products in float64 with unquantized activations, to
# measure what the engine's 8-bit activations cost.
FLOAT_ACTIVATIONS = os.environ.get("REF_FLOAT_ACTIVATIONS") == "1"


def f16_round(x):
    return x.astype(np.float16).astype(np.float64)


def quantize_blocks(x, size, fp16_scale):
    """ggml's reference rounding per block of `size`: d = amax/127, q = round(x * (1/d)).
    Q8_0 (32, d stored as fp16) for most int8 products; the engine's Q8_K (256, d
    kept in float32) for the K-quant weights."""
    x32 = x.astype(np.float32).reshape(-1, size)
    d = np.abs(x32).max(axis=1) / np.float32(127)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    y = (x32 * idv[:, None]).astype(np.float64)
    q = np.sign(y) * np.floor(np.abs(y) + 0.5)  # C roundf: halves away from zero
    scale = d.astype(np.float16) if fp16_scale else d
    return (q * scale.astype(np.float64)[:, None]).reshape(x.shape)


def matmul(x, w):
    mat, t = w
    if t in QUANTIZED and not FLOAT_ACTIVATIONS:  # as the engine does for int8 products
        k = t in (12, 13, 14)
        x = np.stack([quantize_blocks(row, 256 if k else 32, not k) for row in x])
    return x @ mat.T


def rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * w


def rope(v, pos, n_rot, neox, inv_freq, mscale):
    out = v.copy()
    ang = pos * inv_freq
    c, s = np.cos(ang) * mscale, np.sin(ang) * mscale
    half = n_rot // 2
    if neox:
        i0, i1 = np.arange(half), np.arange(half) + half
    else:
        i0, i1 = np.arange(half) * 2, np.arange(half) * 2 + 1
    x0, x1 = v[..., i0], v[..., i1]
    out[..., i0] = x0 * c - x1 * s
    out[..., i1] = x0 * s + x1 * c
    return out


def rope_frequencies(meta, T, n_rot, theta, n_ctx):
    """Rotation speed per dimension pair and the cos/sin multiplier.
    YaRN (Peng et al. 2023): dimensions whose wavelength turns more than
    beta_fast = 32 times over the original context keep their frequency, those
    turning fewer than beta_slow = 1 times are divided by the factor, a linear ramp
    between; cos/sin grow by 1 + 0.1 ln(factor). LongRoPE (Phi-3 *-128k): per-pair
    divisors, the long ones when the context exceeds the original, and cos/sin
    times the attention factor, sqrt(1 + ln(s)/ln(original)) unless given."""
    arch = meta["general.architecture"]
    g = lambda k, d=None: meta.get(f"{arch}.{k}", d)
    half = n_rot // 2
    inv_freq = theta ** (-2.0 * np.arange(half) / n_rot)
    if "rope_freqs.weight" in T:
        inv_freq = inv_freq / T["rope_freqs.weight"][0]
    kind = g("rope.scaling.type", "none")
    orig = g("rope.scaling.original_context_length", g("context_length"))
    attn = g("rope.scaling.attn_factor")
    mscale = 1.0
    if kind == "linear":
        inv_freq = inv_freq / g("rope.scaling.factor")
    elif kind == "yarn":
        factor = g("rope.scaling.factor")
        dim = lambda rotations: n_rot * np.log(orig / (rotations * 2 * np.pi)) / (2 * np.log(theta))
        lo, hi = max(0.0, np.floor(dim(32))), min(n_rot - 1.0, np.ceil(dim(1)))
        ramp = np.clip((np.arange(half) - lo) / max(0.001, hi - lo), 0, 1)
        keep = 1 - ramp  # 1: extrapolate (keep the frequency), 0: interpolate
        inv_freq = inv_freq / factor * (1 - keep) + inv_freq * keep
        mscale = (attn or 1.0) * (1 + 0.1 * np.log(factor))
    if "rope_factors_long.weight" in T:
        key = "rope_factors_long.weight" if n_ctx > orig else "rope_factors_short.weight"
        inv_freq = inv_freq / T[key][0]
        s = g("context_length") / orig
        mscale = attn if attn else (np.sqrt(1 + np.log(s) / np.log(orig)) if s > 1 else 1.0)
    return inv_freq, mscale


def forward(meta, T, tokens, kv_type, n_ctx, trace=None):
    """The logits; trace (a dict with "layer" and "head"), when given, also gets
    "resid" (the L2 norms of x at every stage) and "attn" (that head's weights)."""
    arch = meta["general.architecture"]
    g = lambda k, d=None: meta.get(f"{arch}.{k}", d)
    d, L, H = g("embedding_length"), g("block_count"), g("attention.head_count")
    KH = g("attention.head_count_kv", H)
    hd = g("attention.key_length", d // H)
    n_rot = g("rope.dimension_count", hd)
    window = g("attention.sliding_window", 0)
    theta = g("rope.freq_base", 10000.0)
    eps = g("attention.layer_norm_rms_epsilon", 1e-5)
    neox = arch in ("qwen2", "phi3", "gemma2")
    gemma2 = arch == "gemma2"  # Gemma 2 (Google 2024): GeGLU, post-norms, soft-capping
    attn_cap, final_cap = g("attn_logit_softcapping", 0), g("final_logit_softcapping", 0)
    inv_freq, mscale = rope_frequencies(meta, T, n_rot, theta, n_ctx)
    n = len(tokens)
    emb = T["token_embd.weight"][0]
    x = emb[tokens].copy()
    if gemma2:
        x *= np.sqrt(d)
    stages = trace.setdefault("resid", []) if trace is not None else []
    stages.append(np.linalg.norm(x, axis=1))
    causal = np.triu(np.full((n, n), -np.inf), 1)
    windowed = causal + np.tril(np.full((n, n), -np.inf), -window) if window else causal
    # a query at i sees positions (i - window, i]; gemma2 on even layers only
    cache = f16_round if kv_type == "f16" else (lambda a: a)
    for layer in range(L):
        p = f"blk.{layer}."
        xb = rmsnorm(x, T[p + "attn_norm.weight"][0], eps)
        if p + "attn_qkv.weight" in T:
            qkv = matmul(xb, T[p + "attn_qkv.weight"])
            q, k, v = qkv[:, :H * hd], qkv[:, H * hd:H * hd + KH * hd], qkv[:, H * hd + KH * hd:]
        else:
            q, k, v = (matmul(xb, T[p + f"attn_{w}.weight"]) for w in "qkv")
        for name, arr in (("q", q), ("k", k), ("v", v)):
            if p + f"attn_{name}.bias" in T:
                arr += T[p + f"attn_{name}.bias"][0]
        q = q.reshape(n, H, hd)
        k = k.reshape(n, KH, hd)
        v = v.reshape(n, KH, hd)
        q = np.stack([rope(q[i], i, n_rot, neox, inv_freq, mscale) for i in range(n)])
        k = np.stack([rope(k[i], i, n_rot, neox, inv_freq, mscale) for i in range(n)])
        k, v = cache(k), cache(v)
        out = np.zeros((n, H, hd))
        for h in range(H):
            kh = h // (H // KH)
            mask = causal if gemma2 and layer % 2 else windowed
            s = q[:, h, :] @ k[:, kh, :].T / np.sqrt(hd)
            if attn_cap:
                s = attn_cap * np.tanh(s / attn_cap)
            s = s + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            weights = s / s.sum(axis=1, keepdims=True)
            if trace is not None and (layer, h) == (trace["layer"], trace["head"]):
                trace["attn"] = weights
            out[:, h, :] = weights @ v[:, kh, :]
        a = matmul(out.reshape(n, H * hd), T[p + "attn_output.weight"])
        if gemma2:
            a = rmsnorm(a, T[p + "post_attention_norm.weight"][0], eps)
        x = x + a
        stages.append(np.linalg.norm(x, axis=1))
        xb = rmsnorm(x, T[p + "ffn_norm.weight"][0], eps)
        if p + "ffn_gate.weight" in T:
            gate, up = matmul(xb, T[p + "ffn_gate.weight"]), matmul(xb, T[p + "ffn_up.weight"])
        else:
            gu = matmul(xb, T[p + "ffn_up.weight"])
            gate, up = gu[:, :gu.shape[1] // 2], gu[:, gu.shape[1] // 2:]
        if gemma2:  # GELU, tanh approximation
            act = 0.5 * gate * (1 + np.tanh(np.sqrt(2 / np.pi) * (gate + 0.044715 * gate**3)))
        else:  # SiLU
            act = gate / (1 + np.exp(-gate))
        f = matmul(act * up, T[p + "ffn_down.weight"])
        if gemma2:
            f = rmsnorm(f, T[p + "post_ffw_norm.weight"][0], eps)
        x = x + f
        stages.append(np.linalg.norm(x, axis=1))
    x = rmsnorm(x, T["output_norm.weight"][0], eps)
    out_w = T.get("output.weight", T["token_embd.weight"])
    logits = matmul(x, out_w)
    return final_cap * np.tanh(logits / final_cap) if final_cap else logits


def main():
    if sys.argv[1] == "--dump":
        _, T = load_gguf(sys.argv[2])
        for row in T[sys.argv[3]][0][:int(sys.argv[4])]:
            print(" ".join(f"{v:.9g}" for v in row.astype(np.float32)))
        return
    if sys.argv[1] == "--trace":
        meta, T = load_gguf(sys.argv[2])
        tokens = [int(t) for t in sys.argv[3].split(",")]
        trace = {"layer": int(sys.argv[5]), "head": int(sys.argv[6])}
        forward(meta, T, tokens, sys.argv[4], len(tokens), trace)
        for s, norms in enumerate(trace["resid"]):
            print("resid", s, " ".join(f"{v:.7g}" for v in norms))
        for q, row in enumerate(trace["attn"]):
            print("attn", q, " ".join(f"{v:.7g}" for v in row[:q + 1]))
        return
    meta, T = load_gguf(sys.argv[1])
    tokens = [int(t) for t in sys.argv[2].split(",")]
    # the KV capacity the engine ran with (LongRoPE chooses its factors by it)
    n_ctx = int(sys.argv[4]) if len(sys.argv) > 4 else len(tokens)
    logits = forward(meta, T, tokens, sys.argv[3], n_ctx)
    for row in logits:
        print(" ".join(f"{v:.7g}" for v in row))


if __name__ == "__main__":
    main()
