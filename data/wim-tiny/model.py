"""model.py — wim-tiny's network in PyTorch: the `llama` architecture exactly as the C
engine computes it (src/forward.c), and its GGUF export.

Owns: the hyper-parameters (CONFIG), the forward pass with explicit RoPE positions and an
attention mask (so training can reproduce the engine's streaming window: pinned prefix,
then a window of recent cells at their absolute positions), and write_gguf.

Invariants: RoPE is the `llama` (GPT-J, interleaved pairs) kind the engine uses for this
architecture, so no weight permutation is needed on export; RMSNorm eps, rope theta and
tied embeddings are written into the GGUF exactly as used here.
"""
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = dict(dim=128, n_layers=3, n_heads=4, n_kv_heads=4, ffn=384, norm_eps=1e-5,
              rope_theta=10000.0, ctx=512)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(pos, hd, theta):
    """cos and sin (B, 1, T, hd/2) of every position's angles, computed in float64
    because positions reach tens of thousands."""
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64, device=pos.device) / hd))
    ang = pos.double()[..., None] * inv
    return ang.cos().float()[:, None], ang.sin().float()[:, None]


def rope(x, cs):
    """x: (B, H, T, hd). Rotates pairs (2i, 2i+1) as the engine's `llama` RoPE does."""
    c, s = cs
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).flatten(-2)


def attention(q, k, v, mask):
    """softmax(q k^T / sqrt(hd), where mask) v; mask is boolean, True where allowed."""
    if hasattr(F, "scaled_dot_product_attention"):  # PyTorch 2: fused kernels on a GPU
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
    return ((q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2) + bias).softmax(-1) @ v


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.h, self.hkv = c["dim"], c["n_heads"], c["n_kv_heads"]
        self.hd = d // self.h
        self.attn_norm = RMSNorm(d, c["norm_eps"])
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, self.hkv * self.hd, bias=False)
        self.wv = nn.Linear(d, self.hkv * self.hd, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.ffn_norm = RMSNorm(d, c["norm_eps"])
        self.w1 = nn.Linear(d, c["ffn"], bias=False)  # gate
        self.w3 = nn.Linear(d, c["ffn"], bias=False)  # up
        self.w2 = nn.Linear(c["ffn"], d, bias=False)  # down

    def forward(self, x, cs, mask):
        B, T, D = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.wk(h).view(B, T, self.hkv, self.hd).transpose(1, 2)
        v = self.wv(h).view(B, T, self.hkv, self.hd).transpose(1, 2)
        q, k = rope(q, cs), rope(k, cs)
        if self.hkv != self.h:
            k = k.repeat_interleave(self.h // self.hkv, 1)
            v = v.repeat_interleave(self.h // self.hkv, 1)
        att = attention(q, k, v, mask)
        x = x + self.wo(att.transpose(1, 2).reshape(B, T, D))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Model(nn.Module):
    def __init__(self, n_vocab, c=CONFIG):
        super().__init__()
        self.c = dict(c)
        self.emb = nn.Embedding(n_vocab, c["dim"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["n_layers"]))
        self.norm = RMSNorm(c["dim"], c["norm_eps"])
        nn.init.normal_(self.emb.weight, std=0.02)
        for b in self.blocks:
            for lin in (b.wq, b.wk, b.wv, b.w1, b.w3):
                nn.init.normal_(lin.weight, std=0.02)
            for lin in (b.wo, b.w2):
                nn.init.normal_(lin.weight, std=0.02 / (2 * c["n_layers"]) ** 0.5)

    def forward(self, tokens, pos, mask):
        x = self.emb(tokens)
        mask = mask[:, None]  # (B, 1, T, T), True where a query may attend: every head alike
        cs = rope_tables(pos, self.c["dim"] // self.c["n_heads"], self.c["rope_theta"])
        for b in self.blocks:
            x = b(x, cs, mask)
        return self.norm(x) @ self.emb.weight.T  # tied output


def branch_mask(pos, branch, pin, n, cells):
    """Attention masks (B, T, T) for a batch of branched examples, built where the
    tensors live (on the GPU a batch's masks would be too many bytes to ship): causal;
    a branch sees the trunk (branch 0) and itself; and the engine's streaming window by
    position (the pinned cells, or the last cells - pin positions). pos, branch: (B, T);
    pin, n (each example's length): (B,). Padding rows see everything (their softmax
    stays finite; they are never targets)."""
    T = pos.shape[1]
    i = torch.arange(T, device=pos.device)[:, None]
    j = torch.arange(T, device=pos.device)[None]
    same = (branch[:, None, :] == 0) | (branch[:, None, :] == branch[:, :, None])
    near = (j < pin[:, None, None]) | (pos[:, :, None] - pos[:, None, :] < (cells - pin)[:, None, None])
    return ((j <= i) & same & near) | (i >= n[:, None, None])


def gguf_names(n_layers):
    """PyTorch state-dict key -> GGUF tensor name (llama.cpp's names for `llama`)."""
    per_block = {"attn_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v",
                 "wo": "attn_output", "ffn_norm": "ffn_norm", "w1": "ffn_gate", "w3": "ffn_up",
                 "w2": "ffn_down"}
    names = {"emb.weight": "token_embd.weight"}
    for i in range(n_layers):
        for mod, g in per_block.items():
            names[f"blocks.{i}.{mod}.weight"] = f"blk.{i}.{g}.weight"
    names["norm.weight"] = "output_norm.weight"
    return names


# --- GGUF (v3) writer ---

GGUF_F32, GGUF_F16, GGUF_Q8_0 = 0, 1, 8
V_U32, V_I32, V_F32, V_BOOL, V_STR, V_ARR = 4, 5, 6, 7, 8, 9


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(v):
    if isinstance(v, bool):
        return struct.pack("<I", V_BOOL) + struct.pack("<B", v)
    if isinstance(v, int):
        return struct.pack("<I", V_U32) + struct.pack("<I", v)
    if isinstance(v, float):
        return struct.pack("<I", V_F32) + struct.pack("<f", v)
    if isinstance(v, str):
        return struct.pack("<I", V_STR) + _str(v)
    kind, items = v  # ("str"|"f32"|"i32", list)
    if kind == "str":
        return struct.pack("<IIQ", V_ARR, V_STR, len(items)) + b"".join(_str(s) for s in items)
    t, fmt = (V_F32, "<f") if kind == "f32" else (V_I32, "<i")
    return struct.pack("<IIQ", V_ARR, t, len(items)) + np.asarray(items, fmt[1]).astype(fmt).tobytes()


def quantize_q8_0(w):
    """ggml's Q8_0: blocks of 32, d = amax/127 as fp16, q = round(x/d) (halves away from 0)."""
    x = w.astype(np.float32).reshape(-1, 32)
    d = np.abs(x).max(1) / np.float32(127)
    idv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    y = x * idv[:, None]
    q = (np.sign(y) * np.floor(np.abs(y) + 0.5)).astype(np.int8)
    out = np.zeros(x.shape[0], dtype=[("d", "<f2"), ("q", "i1", 32)])
    out["d"], out["q"] = d.astype(np.float16), q
    return out.tobytes()


def config_from_gguf(meta):
    """CONFIG with the shape a GGUF written by write_gguf stores (eps and theta stay as
    CONFIG has them: the file holds them rounded to float32)."""
    return dict(CONFIG, dim=meta["llama.embedding_length"], n_layers=meta["llama.block_count"],
                n_heads=meta["llama.attention.head_count"],
                n_kv_heads=meta["llama.attention.head_count_kv"],
                ffn=meta["llama.feed_forward_length"])


def write_gguf(path, model, tok, wtype="q8_0", name="wim-tiny"):
    """Writes the model and its tokenizer; 2-D matrices in wtype (q8_0 or f16), vectors f32."""
    c = model.c
    meta = {
        "general.architecture": "llama",
        "general.name": name,
        "general.file_type": 7 if wtype == "q8_0" else 1,
        "llama.context_length": c["ctx"],
        "llama.embedding_length": c["dim"],
        "llama.block_count": c["n_layers"],
        "llama.feed_forward_length": c["ffn"],
        "llama.attention.head_count": c["n_heads"],
        "llama.attention.head_count_kv": c["n_kv_heads"],
        "llama.attention.layer_norm_rms_epsilon": float(c["norm_eps"]),
        "llama.rope.freq_base": float(c["rope_theta"]),
        "llama.rope.dimension_count": c["dim"] // c["n_heads"],
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": ("str", tok.pieces),
        "tokenizer.ggml.scores": ("f32", tok.scores),
        "tokenizer.ggml.token_type": ("i32", tok.types),
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.eot_token_id": 4,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_space_prefix": False,
        "tokenizer.chat_template": (
            "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
            "{{ message['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    }
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    tensors = [(g, sd[k]) for k, g in gguf_names(c["n_layers"]).items()]
    blobs = []
    for n, a in tensors:
        if a.ndim == 1:
            blobs.append((n, a.shape, GGUF_F32, a.astype("<f4").tobytes()))
        elif wtype == "q8_0":
            blobs.append((n, a.shape, GGUF_Q8_0, quantize_q8_0(a)))
        else:
            blobs.append((n, a.shape, GGUF_F16, a.astype("<f2").tobytes()))
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(blobs), len(meta)))
    for k, v in meta.items():
        out += _str(k) + _value(v)
    off = 0
    for n, shape, t, data in blobs:
        dims = list(reversed(shape))  # ggml: innermost first
        out += _str(n) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", t, off)
        off += (len(data) + 31) // 32 * 32
    out += b"\0" * (-len(out) % 32)
    for n, shape, t, data in blobs:
        out += data + b"\0" * (-len(data) % 32)
    import os
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(out)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
