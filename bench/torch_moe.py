#!/usr/bin/env python3
"""The switchyard model (SPEC section 1) in plain PyTorch, eager, on the CPU or a CUDA GPU.

Two uses:
  bench  the peer a user would otherwise run: the same config's training steps (micro-batches,
         gradient accumulation, clipping, AdamW) written the way most MoE code is, with a Python
         loop over the experts on gathered tokens; prints one JSON line with tokens/s.
         --device cuda (default: the config's `device`) runs it on the GPU the way a user would
         write it there: bf16 autocast when train.precision is bf16 (fp32 master weights, fp32
         AdamW), fused causal attention (F.scaled_dot_product_attention), the same per-expert
         loop, and weights drawn with torch.randn on the device (the timed steps do not depend
         on which normal draws they start from; `check` keeps SPEC 2's Philox init).
  check  an independent cross-check of switchyard's loss: the loss (lm, aux, z) of one global
         batch from the initial weights of SPEC section 2 (Philox4x32-10 re-implemented here in
         numpy, bit for bit) or from a switchyard checkpoint (SPEC section 5, read with h5py), on
         the batch switchyard's loader picks for that step (SPEC 3's data order re-implemented
         here too). Prints one JSON line.

    python3 bench/torch_moe.py bench --config configs/small.yaml [--set k=v ...] [--steps N]
    python3 bench/torch_moe.py bench --config configs/gpu-medium.yaml --device cuda
    python3 bench/torch_moe.py check --config runs/x/config.yaml [--checkpoint step_00000010.h5]

Needs torch, numpy, pyyaml, and h5py (token files, checkpoints). Nothing here is imported by
switchyard; `switchyard bench train` runs it as a subprocess when torch is importable.
"""

import argparse
import functools
import json
import math
import statistics
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import yaml
except ImportError as e:  # the caller (a CTest entry) treats 77 as "skipped"
    print(f"torch_moe.py: {e}; needs torch, numpy, pyyaml (and h5py)", file=sys.stderr)
    sys.exit(77)

# ----------------------------------------------------------------------------- config (SPEC 7)

DEFAULTS = {
    "run": {"name": "run", "seed": 1234, "out_dir": ""},
    "model": {"vocab_size": 256, "d_model": 64, "n_layers": 2, "n_heads": 4, "seq_len": 64,
              "norm_eps": 1e-5, "rope_theta": 10000.0, "tie_embeddings": True},
    "moe": {"num_experts": 4, "top_k": 2, "ffn_hidden": 128, "shared_experts": 0,
            "norm_topk": True, "capacity_factor": None, "aux_loss_coeff": 1e-2,
            "aux_loss_scope": "sequence", "z_loss_coeff": 1e-3, "bias_update_rate": 0.0,
            "score": "softmax", "gate_scale": 1.0, "route_groups": 1, "route_groups_topk": 1},
    "train": {"steps": 100, "global_batch": 8, "micro_batch": 8, "lr": 1e-3, "min_lr": 1e-4,
              "warmup_steps": 10, "weight_decay": 0.1, "grad_clip": 1.0},
    "data": {"path": ""},
}

# Keys switchyard has whose value leaves SPEC 1's math alone (overlap_chunks pipelines the
# exchange; precision is honoured by `bench --device cuda`'s autocast).
MATH_FREE_KEYS = {"moe": ("overlap_chunks",), "train": ("precision",)}


def load_config(path, overrides, one_process=False, resolved_route_groups=None):
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    for o in overrides:
        key, _, value = o.partition("=")
        sec, _, leaf = key.partition(".")
        raw.setdefault(sec, {})[leaf] = yaml.safe_load(value)
    cfg = {}
    for sec, keys in DEFAULTS.items():
        # A key this model does not know would be a model switchyard trains and this one does
        # not: refuse it rather than check another model (keys that leave the math alone pass).
        for key in (raw.get(sec) or {}):
            if key not in keys and key not in MATH_FREE_KEYS.get(sec, ()):
                sys.exit(f"torch_moe.py: {sec}.{key} is not modelled here (bench/torch_moe.py)")
        cfg[sec] = dict(keys)
        cfg[sec].update((raw.get(sec) or {}))
    cfg["device"] = raw.get("device", "cpu")
    moe = cfg["moe"]
    if moe["score"] not in ("softmax", "sigmoid"):
        sys.exit(f"torch_moe.py: moe.score: {moe['score']!r} is neither softmax nor sigmoid")
    if moe["score"] == "sigmoid" and "z_loss_coeff" not in (raw.get("moe") or {}):
        moe["z_loss_coeff"] = 0.0  # SPEC 1: the z-loss is defined for softmax scores only
    if moe["route_groups"] == "nodes" and one_process:
        moe["route_groups"] = 1  # the nodes one process spans: one (switchyard on one rank too)
    elif moe["route_groups"] == "nodes" and isinstance(resolved_route_groups, int):
        moe["route_groups"] = resolved_route_groups  # what the checkpoint's run resolved
    if not isinstance(moe["route_groups"], int) or isinstance(moe["route_groups"], bool):
        # `nodes` is the number of nodes the run's expert layout spans: a launch fact, not a
        # config one, so `check` of a run's config cannot know it.
        sys.exit(f"torch_moe.py: moe.route_groups: {moe['route_groups']!r} depends on the launch; "
                 "give the number of groups it resolved to with --set moe.route_groups=N "
                 "(a --checkpoint of the run says it)")
    return cfg


# ----------------------------------------------------------------------------- Philox (SPEC 2)
# A transcription of kernels/cpu/philox.h and src/model/init.h over numpy arrays. numpy does each
# float64 operation separately (no fused multiply-add), in the order written, which is what the
# C++ side guarantees too; so the draws, and the float32 weights, are the same bits.

M32 = np.uint64(0xFFFFFFFF)
PHILOX_M0, PHILOX_M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
PHILOX_W0, PHILOX_W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)


def philox4x32(c, key):
    """c: four uint64 arrays holding 32-bit words; key: two uint64 scalars. Ten rounds."""
    c0, c1, c2, c3 = c
    k0, k1 = key
    for r in range(10):
        if r > 0:
            k0 = (k0 + PHILOX_W0) & M32
            k1 = (k1 + PHILOX_W1) & M32
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & M32,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & M32)
    return c0, c1, c2, c3


def seed_key(seed):
    return np.uint64(seed & 0xFFFFFFFF), np.uint64((seed >> 32) & 0xFFFFFFFF)


def fnv1a64(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def log_u01(x):
    n = 2 * x.astype(np.uint64) + np.uint64(1)
    nf = n.astype(np.float64)  # exact: n < 2^34
    e = np.frexp(nf)[1].astype(np.int64) - 1  # floor(log2(n))
    m = nf / np.ldexp(1.0, e)  # [1, 2), exact
    big = m > 1.4142135623730951
    m = np.where(big, m * 0.5, m)
    e = np.where(big, e + 1, e)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    poly = np.full_like(s, 1.0 / 21.0)
    for k in range(9, -1, -1):
        poly = 1.0 / float(2 * k + 1) + s2 * poly
    log_m = 2.0 * (s * poly)
    return (e - 33).astype(np.float64) * 0.6931471805599453 + log_m


def sincos_2pi_u01(x):
    n = 2 * x.astype(np.int64) + 1
    q = (n + (1 << 30)) >> 31
    r = n - q * (1 << 31)
    theta = r.astype(np.float64) * (3.141592653589793 / 4294967296.0)
    t2 = theta * theta
    ps = np.ones_like(theta)
    pc = np.ones_like(theta)
    for k in range(9, 0, -1):
        ps = 1.0 + -((t2 * ps) * (1.0 / float((2 * k) * (2 * k + 1))))
        pc = 1.0 + -((t2 * pc) * (1.0 / float((2 * k - 1) * (2 * k))))
    s, c = theta * ps, pc
    q = q & 3
    sin = np.select([q == 0, q == 1, q == 2], [s, c, -s], -c)
    cos = np.select([q == 0, q == 1, q == 2], [c, -s, -c], s)
    return sin, cos


def box_muller(xa, xb):
    rho = np.sqrt(-2.0 * log_u01(xa))
    s, c = sincos_2pi_u01(xb)
    return rho * c, rho * s


def init_normal(name, numel, std, seed):
    """float32[numel]: element i = (float)(std * z[i % 4]) of Philox block i / 4 (SPEC 2)."""
    stream = fnv1a64(name)
    blocks = np.arange((numel + 3) // 4, dtype=np.uint64)
    ctr = (blocks & M32, blocks >> np.uint64(32),
           np.full_like(blocks, stream & 0xFFFFFFFF), np.full_like(blocks, stream >> 32))
    w = philox4x32(ctr, seed_key(seed))
    z0, z1 = box_muller(w[0], w[1])
    z2, z3 = box_muller(w[2], w[3])
    z = np.stack([z0, z1, z2, z3], axis=1).reshape(-1)[:numel]
    return (std * z).astype(np.float32)


def param_specs(cfg):
    """(name, shape, kind, init_std) in src/model/params.cpp's order."""
    m, moe = cfg["model"], cfg["moe"]
    V, C, L = m["vocab_size"], m["d_model"], m["n_layers"]
    E, Fh, S = moe["num_experts"], moe["ffn_hidden"], moe["shared_experts"]
    std, out_std = 0.02, 0.02 / math.sqrt(2.0 * L)
    specs = [("model/embed", (V, C), "matrix", std)]
    if not m["tie_embeddings"]:
        specs.append(("model/head", (V, C), "matrix", std))
    specs.append(("model/final_norm", (C,), "gain", 0))
    for l in range(L):
        p = f"model/layers/{l}/"
        specs += [(p + "attn_norm", (C,), "gain", 0), (p + "attn/wqkv", (C, 3 * C), "matrix", std),
                  (p + "attn/wo", (C, C), "matrix", out_std), (p + "moe_norm", (C,), "gain", 0),
                  (p + "moe/router", (C, E), "matrix", std), (p + "moe/bias", (E,), "bias", 0),
                  (p + "moe/w1", (E, C, Fh), "matrix", std), (p + "moe/w3", (E, C, Fh), "matrix", std),
                  (p + "moe/w2", (E, Fh, C), "matrix", out_std)]
        if S > 0:
            specs += [(p + "moe/shared/w1", (S, C, Fh), "matrix", std),
                      (p + "moe/shared/w3", (S, C, Fh), "matrix", std),
                      (p + "moe/shared/w2", (S, Fh, C), "matrix", out_std)]
    return specs


def init_params(cfg):
    seed = int(cfg["run"]["seed"])
    out = {}
    for name, shape, kind, std in param_specs(cfg):
        numel = int(np.prod(shape))
        if kind == "matrix":
            a = init_normal(name, numel, std, seed)
        else:
            a = np.full(numel, 1.0 if kind == "gain" else 0.0, dtype=np.float32)
        out[name] = torch.from_numpy(a.reshape(shape))
    return out


def load_checkpoint(cfg, path):
    """The weights, the step, and where the next batch starts (consumed_sequences; None in a
    file without it)."""
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        for name, shape, _, _ in param_specs(cfg):
            a = np.asarray(f["/" + name], dtype=np.float32)
            assert a.shape == tuple(shape), f"{path}:/{name} has shape {a.shape}, expected {shape}"
            out[name] = torch.from_numpy(a.copy())
        step = int(f.attrs["step"])
        data = f.get("/state/data")
        consumed = int(data.attrs["consumed_sequences"]) if (
            data is not None and "consumed_sequences" in data.attrs) else None
    return out, step, consumed


def stored_route_groups(path):
    """moe.route_groups as the checkpoint's run resolved it (its root attribute `config`)."""
    import h5py
    with h5py.File(path, "r") as f:
        config = f.attrs["config"]
    stored = yaml.safe_load(config.decode() if isinstance(config, bytes) else config) or {}
    return (stored.get("moe") or {}).get("route_groups")


# ----------------------------------------------------------------------------- data (SPEC 3, 8)

DATA_TAG = 0x44415441  # "DATA": src/data/loader.cpp's tag on the data-order counters


def epoch_permutation(seed, epoch, W):
    i = np.arange(W, dtype=np.uint64)
    e = np.uint64(epoch)
    ctr = (i & M32, i >> np.uint64(32), np.full_like(i, e & M32),
           np.full_like(i, (e >> np.uint64(32)) ^ np.uint64(DATA_TAG)))
    r = philox4x32(ctr, seed_key(seed))
    draws = [int(a) | (int(b) << 32) for a, b in zip(r[0], r[1])]
    perm = list(range(W))
    for k in range(W - 1, 0, -1):
        j = draws[k] % (k + 1)
        perm[k], perm[j] = perm[j], perm[k]
    return perm


class Batches:
    """The global batch of step t, [GB, T+1] token rows, in switchyard's order."""

    def __init__(self, train, T, GB, seed):
        self.train, self.T, self.GB, self.seed = train, T, GB, seed
        self.W = (len(train) - 1) // T
        self.perms = {}

    def step(self, t, first=None):
        """first: the global index of the batch's first sequence (default t * GB; a checkpoint
        records it, /state/data's consumed_sequences, which differs after a resume that changed
        train.global_batch)."""
        rows = []
        first = t * self.GB if first is None else first
        for j in range(self.GB):
            g = first + j
            ep = g // self.W
            if ep not in self.perms:
                self.perms[ep] = epoch_permutation(self.seed, ep, self.W)
            w = self.perms[ep][g % self.W]
            rows.append(self.train[w * self.T: w * self.T + self.T + 1])
        return torch.from_numpy(np.stack(rows).astype(np.int64))


def read_tokens(path):
    import h5py
    with h5py.File(path, "r") as f:
        return np.asarray(f["/train"], dtype=np.int64), np.asarray(f["/val"], dtype=np.int64)


# ----------------------------------------------------------------------------- the model (SPEC 1)

def rmsnorm(x, g, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g


@functools.lru_cache(maxsize=4)
def rope_tables(T, hd, theta, device="cpu"):
    # Angles in double, rounded once to float (as kernels/cpu/rope.cpp does).
    i = torch.arange(hd // 2, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * i / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return torch.cos(ang).float().to(device), torch.sin(ang).float().to(device)


def rope(x, cos, sin):
    # rotate-half: pairs (i, i + hd/2); x: [B, H, T, hd]
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # bf16 q, k stay bf16 (as GPU MoE code does)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def capacity(cfg, n_tok):
    c = cfg["moe"]["capacity_factor"]
    if c is None:
        return n_tok
    K, E = cfg["moe"]["top_k"], cfg["moe"]["num_experts"]
    x = c * n_tok * K / E
    if x >= n_tok:
        return n_tok
    r = round(x)
    if r >= 1 and abs(x - r) <= 1e-9 * r:  # a decimal factor's product rounded, as switchyard
        return int(r)
    return int(math.ceil(x))


def swiglu(x, w1, w3, w2):
    return (F.silu(x @ w1) * (x @ w3)) @ w2


def moe_layer(cfg, P, l, m, B, T, stats=None):
    """m: [N, C] (N = B*T, the routing group). Returns (out [N, C], aux_sum, z_sum)."""
    moe = cfg["moe"]
    E, K = moe["num_experts"], moe["top_k"]
    p_ = f"model/layers/{l}/moe/"
    N = m.shape[0]
    z = m @ P[p_ + "router"]
    if moe["score"] == "sigmoid":  # per expert; the balance loss sees them normalised over E
        probs = torch.sigmoid(z)
        balance = probs / probs.sum(-1, keepdim=True)
    else:
        probs = torch.softmax(z, dim=-1)
        balance = probs
    lse = torch.logsumexp(z, dim=-1)
    scores = (probs + P[p_ + "bias"]).detach()
    R, M = moe["route_groups"], moe["route_groups_topk"]
    if R > 1 and M < R:  # group-limited: select only among the experts of the M best groups
        r = -(-K // M)
        best = torch.sort(scores.view(N, R, E // R), dim=-1, descending=True, stable=True).values
        group_score = best[..., 0]
        for j in range(1, r):  # added best first, in fp32, as switchyard does
            group_score = group_score + best[..., j]
        kept = torch.sort(group_score, dim=-1, descending=True, stable=True).indices[:, :M]
        in_kept = torch.zeros(N, R, dtype=torch.bool, device=m.device).scatter_(1, kept, True)
        scores = scores.masked_fill(~in_kept.repeat_interleave(E // R, dim=1), -math.inf)
    # top-k with ties to the lower expert index: a stable descending sort.
    sel = torch.sort(scores, dim=-1, descending=True, stable=True).indices[:, :K]  # [N, K]
    gates = probs.gather(1, sel)
    if moe["norm_topk"]:
        gates = gates / gates.sum(-1, keepdim=True)
    gates = gates * moe["gate_scale"]

    out = torch.zeros_like(m)
    cap = capacity(cfg, N)
    p_sel = probs.detach().gather(1, sel)
    for e in range(E):  # the per-expert loop most MoE code has
        tok, slot = torch.nonzero(sel == e, as_tuple=True)  # token order
        if tok.numel() > cap:  # keep the highest p, ties to the lower token index
            order = sorted(range(tok.numel()), key=lambda i: (-float(p_sel[tok[i], slot[i]]), int(tok[i])))
            keep = torch.tensor(sorted(order[:cap]), dtype=torch.long, device=m.device)
            if stats is not None:
                stats["dropped"] += tok.numel() - cap
            tok, slot = tok[keep], slot[keep]
        if tok.numel() == 0:
            continue
        y = swiglu(m[tok], P[p_ + "w1"][e], P[p_ + "w3"][e], P[p_ + "w2"][e])
        out.index_add_(0, tok, y * gates[tok, slot][:, None])  # in place, as MoE code does
    for s in range(moe["shared_experts"]):
        out = out + swiglu(m, P[p_ + "shared/w1"][s], P[p_ + "shared/w3"][s], P[p_ + "shared/w2"][s])

    # aux per balance group (f before capacity, gradient through P only); z-loss on lse.
    groups = B if moe["aux_loss_scope"] == "sequence" else 1
    NG = N // groups
    onehot = torch.zeros(N, E, device=m.device).scatter_(1, sel, 1.0)
    f = onehot.view(groups, NG, E).sum(1) / (NG * K)
    Pm = balance.view(groups, NG, E).mean(1)
    aux_sum = (moe["aux_loss_coeff"] * E * (f * Pm).sum(-1)).sum()
    z_sum = moe["z_loss_coeff"] * lse.pow(2).sum()
    return out, aux_sum, z_sum


def forward_loss(cfg, P, tokens, scale_tok, scale_group, stats=None):
    """tokens: [B, T+1]. Returns (lm, aux, z) already weighted into the global batch's loss."""
    mc = cfg["model"]
    B, T = tokens.shape[0], tokens.shape[1] - 1
    C, H, L = mc["d_model"], mc["n_heads"], mc["n_layers"]
    hd, eps = C // H, mc["norm_eps"]
    inp, tgt = tokens[:, :-1], tokens[:, 1:]
    cos, sin = rope_tables(T, hd, mc["rope_theta"], tokens.device)
    x = P["model/embed"][inp]  # [B, T, C]
    aux = z = 0.0
    for l in range(L):
        p_ = f"model/layers/{l}/"
        a = rmsnorm(x, P[p_ + "attn_norm"], eps)
        q, k, v = (a @ P[p_ + "attn/wqkv"]).split(C, dim=-1)
        q, k, v = (t.view(B, T, H, hd).transpose(1, 2) for t in (q, k, v))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if tokens.is_cuda:  # what GPU code calls: fused (flash) causal attention
            q, k = q.to(v.dtype), k.to(v.dtype)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            y = torch.softmax(att, dim=-1) @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + y @ P[p_ + "attn/wo"]
        m = rmsnorm(x, P[p_ + "moe_norm"], eps).reshape(B * T, C)
        out, a_sum, z_sum = moe_layer(cfg, P, l, m, B, T, stats)
        x = x + out.view(B, T, C)
        aux = aux + a_sum * scale_group
        z = z + z_sum * scale_tok
    head = P["model/embed"] if mc["tie_embeddings"] else P["model/head"]
    logits = rmsnorm(x, P["model/final_norm"], eps) @ head.T
    lm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="sum")
    return lm * scale_tok, aux, z


def scales(cfg):
    T, GB, MB = cfg["model"]["seq_len"], cfg["train"]["global_batch"], cfg["train"]["micro_batch"]
    groups = GB if cfg["moe"]["aux_loss_scope"] == "sequence" else GB // MB
    return 1.0 / (GB * T), 1.0 / groups


# ----------------------------------------------------------------------------- commands

def cmd_check(cfg, args):
    first = None
    if args.checkpoint:
        P, step, first = load_checkpoint(cfg, args.checkpoint)
    else:
        P, step = init_params(cfg), 0
    if args.step is not None:
        step, first = args.step, None
    train, _ = read_tokens(args.data or cfg["data"]["path"])
    T, GB, MB = cfg["model"]["seq_len"], cfg["train"]["global_batch"], cfg["train"]["micro_batch"]
    batch = Batches(train, T, GB, int(cfg["run"]["seed"])).step(step, first)
    st, sg = scales(cfg)
    lm = aux = z = 0.0
    stats = {"dropped": 0}
    with torch.no_grad():
        for first in range(0, GB, MB):  # micro-batches: the routing (capacity) groups
            a, b, c = forward_loss(cfg, P, batch[first:first + MB], st, sg, stats)
            lm, aux, z = lm + float(a), aux + float(b), float(c) + z
    print(json.dumps({"step": step, "loss": lm + aux + z, "lm_loss": lm, "aux_loss": aux,
                      "z_loss": z, "dropped": stats["dropped"]}))


def init_params_fast(cfg, device):
    """The shapes and std of SPEC 2 drawn with torch.randn on `device` (speed runs only)."""
    gen = torch.Generator(device=device).manual_seed(int(cfg["run"]["seed"]))
    out = {}
    for name, shape, kind, std in param_specs(cfg):
        if kind == "matrix":
            out[name] = torch.randn(shape, generator=gen, device=device) * std
        else:
            out[name] = torch.full(shape, 1.0 if kind == "gain" else 0.0, device=device)
    return out


def cmd_bench(cfg, args):
    torch.manual_seed(0)
    device = torch.device(args.device or cfg["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        print("torch_moe.py: --device cuda, but torch sees no CUDA GPU "
              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})", file=sys.stderr)
        sys.exit(2)
    bf16 = device.type == "cuda" and cfg["train"].get("precision", "fp32") == "bf16"
    P = init_params_fast(cfg, device) if device.type == "cuda" else init_params(cfg)
    params = [t.requires_grad_() for t in P.values()]
    decay = [P[n] for n, _, kind, _ in param_specs(cfg) if kind == "matrix"]
    gains = [P[n] for n, _, kind, _ in param_specs(cfg) if kind == "gain"]
    tc = cfg["train"]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc["weight_decay"]},
                             {"params": gains, "weight_decay": 0.0}],
                            lr=tc["lr"], betas=(0.9, 0.95), eps=1e-8)
    T, GB, MB = cfg["model"]["seq_len"], tc["global_batch"], tc["micro_batch"]
    if args.data or cfg["data"]["path"]:
        train, _ = read_tokens(args.data or cfg["data"]["path"])
        batches = Batches(train, T, GB, int(cfg["run"]["seed"]))
        get = batches.step
    else:
        gen = torch.Generator().manual_seed(0)
        get = lambda t: torch.randint(0, cfg["model"]["vocab_size"], (GB, T + 1), generator=gen)
    st, sg = scales(cfg)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, losses = [], []
    peak_used = 0  # device-wide (total - free), as switchyard's peak GPU memory is measured
    for step in range(args.warmup + args.steps):
        batch = get(step).to(device)
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for first in range(0, GB, MB):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                lm, aux, z = forward_loss(cfg, P, batch[first:first + MB], st, sg)
                loss = lm + aux + z
            loss.backward()
            total += float(loss.detach())
        if tc["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(params, tc["grad_clip"])
        opt.step()
        sync()
        if device.type == "cuda":
            free, total_mem = torch.cuda.mem_get_info(device)
            peak_used = max(peak_used, total_mem - free)
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
            losses.append(total)
    step_s = statistics.median(times)
    result = {"tokens_per_s": GB * T / step_s, "step_s": step_s, "steps": args.steps,
              "first_loss": losses[0], "last_loss": losses[-1], "torch": torch.__version__,
              "threads": torch.get_num_threads(), "device": str(device),
              "precision": "bf16" if bf16 else "fp32"}
    if device.type == "cuda":
        result["device"] = torch.cuda.get_device_name(device)
        result["peak_mem_bytes"] = peak_used
        result["max_memory_allocated"] = torch.cuda.max_memory_allocated(device)
        result["max_memory_reserved"] = torch.cuda.max_memory_reserved(device)
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["bench", "check"])
    ap.add_argument("--config", required=True, help="YAML config (switchyard's keys)")
    ap.add_argument("--set", action="append", default=[], help="override a key, a.b=value")
    ap.add_argument("--data", help="token file (default: data.path of the config)")
    ap.add_argument("--steps", type=int, default=10, help="bench: timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="bench: untimed steps first")
    ap.add_argument("--checkpoint", help="check: a switchyard checkpoint (default: initial weights)")
    ap.add_argument("--step", type=int, help="check: whose batch (default: the checkpoint's step, or 0)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    ap.add_argument("--device", choices=["cpu", "cuda"],
                    help="bench: where to run (default: the config's `device`, else cpu)")
    ap.add_argument("--profile", action="store_true",
                    help="bench: print torch.profiler's table of ops by CPU time to stderr")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    resolved = (stored_route_groups(args.checkpoint)
                if args.command == "check" and args.checkpoint else None)
    cfg = load_config(args.config, args.set, one_process=args.command == "bench",
                      resolved_route_groups=resolved)
    run = cmd_bench if args.command == "bench" else cmd_check
    if not args.profile:
        run(cfg, args)
        return
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(cfg, args)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20), file=sys.stderr)


if __name__ == "__main__":
    main()
