#!/usr/bin/env python3
"""The MoE layer of `switchyard bench moe-layer`, in PyTorch eager on the same GPU, printing the
same columns (impl, what, ms, TFLOP/s, vs_dense).

The layer (SPEC section 1, dropless, no shared experts): router logits z = m Wr, p = softmax(z)
in fp32, top-k of p, gates renormalised over the k; expert e: (silu(x W1_e) * (x W3_e)) W2_e;
output = sum_j gate_j * expert_{e_j}(m). Forward+backward through autograd with a fixed upstream
gradient, timed with CUDA events after warm-up.

Variants:
  torch-loop     one expert at a time (index_select, 3 matmuls, index_add_) -- what a plain
                 PyTorch MoE does
  torch-grouped  the expert products through torch._grouped_mm (when this PyTorch has it and the
                 dtype is bf16), tokens sorted by expert once
  dense_ceiling  the same 9 expert products as dense torch.matmul over all tokens*top_k rows

FLOPs are counted as in src/bench/moe_layer_bench.h: expert GEMMs 18*N*K*C*F, router 6*N*C*E.
"""
import argparse
import sys

import torch
import torch.nn.functional as Fn


def parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--ffn", type=int, default=1408)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    return ap.parse_args()


def route(m, wr, k):
    p = torch.softmax((m @ wr).float(), dim=-1)
    gates, idx = torch.topk(p, k, dim=-1)  # ties: PyTorch's order (not part of the timing)
    gates = gates / gates.sum(dim=-1, keepdim=True)
    return gates.to(m.dtype), idx


def moe_loop(m, wr, w1, w3, w2, k):
    gates, idx = route(m, wr, k)
    out = torch.zeros_like(m)
    for e in range(w1.shape[0]):
        tok, slot = torch.nonzero(idx == e, as_tuple=True)
        if tok.numel() == 0:
            continue
        x = m.index_select(0, tok)
        y = (Fn.silu(x @ w1[e]) * (x @ w3[e])) @ w2[e]
        out.index_add_(0, tok, y * gates[tok, slot].unsqueeze(1))
    return out


def moe_grouped(m, wr, w1, w3, w2, k):
    gates, idx = route(m, wr, k)
    flat = idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    tok = order // k
    counts = torch.bincount(flat, minlength=w1.shape[0])
    offs = torch.cumsum(counts, 0).to(torch.int32)
    x = m.index_select(0, tok)
    h = Fn.silu(torch._grouped_mm(x, w1, offs=offs)) * torch._grouped_mm(x, w3, offs=offs)
    y = torch._grouped_mm(h, w2, offs=offs)
    out = torch.zeros_like(m)
    out.index_add_(0, tok, y * gates.reshape(-1)[order].unsqueeze(1))
    return out


def time_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def main():
    a = parse()
    if not torch.cuda.is_available():
        print("torch_moe_layer.py: no CUDA device visible to PyTorch", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    dt = torch.bfloat16 if a.precision == "bf16" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as in switchyard
    N, C, F, E, K = a.tokens, a.d, a.ffn, a.experts, a.top_k
    g = torch.Generator(device=dev).manual_seed(1234)

    def param(*shape, std=0.02):
        return (torch.randn(*shape, device=dev, generator=g) * std).to(dt).requires_grad_()

    wr, w1, w3, w2 = param(C, E), param(E, C, F), param(E, C, F), param(E, F, C)
    m = param(N, C, std=1.0)
    dout = torch.randn(N, C, device=dev, generator=g).to(dt) * 1e-3
    expert_flops = 18.0 * N * K * C * F
    layer_flops = expert_flops + 6.0 * N * C * E

    def step(fn):
        out = fn(m, wr, w1, w3, w2, K)
        out.backward(dout)

    # Dense ceiling: the 9 expert products over A = N*K rows at once.
    A = N * K
    xs = torch.randn(A, C, device=dev, dtype=dt)
    hh = torch.randn(A, F, device=dev, dtype=dt)
    ys = torch.randn(A, C, device=dev, dtype=dt)
    W1, W3, W2 = w1[0].detach(), w3[0].detach(), w2[0].detach()

    def dense():
        torch.matmul(xs, W1)
        torch.matmul(xs, W3)
        torch.matmul(hh, W2)
        torch.matmul(ys, W2.t())
        torch.matmul(hh.t(), ys)
        torch.matmul(hh, W1.t())
        torch.matmul(hh, W3.t())
        torch.matmul(xs.t(), hh)
        torch.matmul(xs.t(), hh)

    dense_ms = time_ms(dense, a.warmup, a.iters)
    dense_tf = expert_flops / (dense_ms * 1e-3) / 1e12
    rows = [("torch-loop", "layer_fwd_bwd", time_ms(lambda: step(moe_loop), a.warmup, a.iters),
             layer_flops)]
    note = ""
    if hasattr(torch, "_grouped_mm") and dt == torch.bfloat16:
        try:
            rows.append(("torch-grouped", "layer_fwd_bwd",
                         time_ms(lambda: step(moe_grouped), a.warmup, a.iters), layer_flops))
        except RuntimeError as e:  # e.g. an architecture without the grouped kernel
            note = f"  (torch._grouped_mm failed: {(str(e).splitlines() or [type(e).__name__])[0]})"
    else:
        note = "  (torch._grouped_mm unavailable for this PyTorch/dtype)"
    rows.append(("torch", "dense_ceiling", dense_ms, expert_flops))

    print(f'# moe-layer  impl=torch-{torch.__version__}  device="{torch.cuda.get_device_name()}"'
          f"  tokens={N} d={C} ffn={F} experts={E} top_k={K} precision={a.precision}{note}")
    print(f"{'# impl':<24}{'what':<22}{'ms':>10}{'TFLOP/s':>10}{'vs_dense':>12}")
    for impl, what, ms, flops in rows:
        tf = flops / (ms * 1e-3) / 1e12
        print(f"{impl:<24}{what:<22}{ms:>10.3f}{tf:>10.1f}{tf / dense_tf:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
