#!/usr/bin/env python3
"""`switchyard ckpt export --format hf` against Hugging Face transformers itself.

For each variant (routed experts only -> Mixtral; shared experts, and norm_topk: false -> Qwen2-MoE;
an untied head; gate_scale 2, folded into the experts exactly) this trains the tiny model a few
steps with a checkpoint at the end, exports it, loads the directory with
AutoModelForCausalLM.from_pretrained, and computes the loss of the validation windows switchyard
evaluates (SPEC 3: the first eval.sequences windows of T+1 tokens of /val). It must equal the
val_loss stored in the checkpoint (written after the final evaluation) within 1e-6 relative.
Three runs of 600 steps with seq_len 8 (Mixtral, Qwen2-MoE, and a capacity-dropping one exported
with --allow-approximate: dropless, as sample is) also check that greedy generate() from the
exported directory continues a prompt to 12 x seq_len tokens with the tokens `switchyard sample
--temperature 0` gives (the export's sliding window of seq_len is the decoder's). A run on a
SentencePiece token file also checks that the exported tokenizer encodes the text as switchyard
did. Exits 77 (CTest SKIP_RETURN_CODE) where torch, transformers, h5py, sentencepiece or protobuf
do not import: PyTorch is a multi-GB install that CI does not carry.

    python3 tests/export/check_hf_transformers.py --switchyard build/switchyard --source .
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from switchyard_check import licence_texts, parse_args, require, run  # noqa: E402

# protobuf: transformers reads a SentencePiece model through it (AutoTokenizer of the BPE run).
h5py, np, torch, transformers, spm, _ = require("h5py", "numpy", "torch", "transformers",
                                                "sentencepiece", "google.protobuf")
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402


VERSION = tuple(int(x) for x in transformers.__version__.split(".")[:2])


def load_fp32(path, **kw):
    """AutoModelForCausalLM in float32. transformers before 4.56 names the keyword torch_dtype
    (there dtype= ends in "Object of type dtype is not JSON serializable")."""
    key = "dtype" if VERSION >= (4, 56) else "torch_dtype"
    return AutoModelForCausalLM.from_pretrained(path, **{key: torch.float32}, **kw)


def load_tokenizer(path, arch):
    """As the README says: transformers 4's AutoTokenizer cannot read a Qwen2-MoE export's
    tokenizer (it asks for tiktoken); LlamaTokenizerFast gives SentencePiece's ids there."""
    if VERSION < (5, 0) and arch.startswith("Qwen2Moe"):
        from transformers import LlamaTokenizerFast
        return LlamaTokenizerFast.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


args = parse_args(lambda ap: ap.add_argument("--rel", type=float, default=1e-6))
failures = 0


def hf_val_loss(model_dir, val, seq_len, windows):
    model = load_fp32(model_dir, attn_implementation="eager")
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(windows):
            w = torch.tensor(val[i * seq_len:i * seq_len + seq_len + 1], dtype=torch.long)
            logits = model(input_ids=w[None, :-1]).logits[0].double()  # fp32 logits, CE in fp64
            lse = torch.logsumexp(logits, dim=-1)
            total += float((lse - logits[torch.arange(seq_len), w[1:]]).sum())
            count += seq_len
    return total / count, type(model).__name__


def check(name, data, overrides, want_arch, tmp, steps=12, approximate=False):
    """approximate: export with --allow-approximate, and no loss check (the training forward that
    gave val_loss is not the exported model's)."""
    global failures
    run_dir = os.path.join(tmp, name)
    cfg = os.path.join(args.source, "configs", "tiny.yaml")
    base = [f"data.path={data}", f"run.out_dir={run_dir}", f"train.steps={steps}",
            f"checkpoint.every={steps}", "eval.every=0", "eval.sequences=6", "log.every=100"]
    sets = []
    for o in base + overrides:
        sets += ["--set", o]
    run([args.switchyard, "train", "--config", cfg] + sets)
    ckpt = os.path.join(run_dir, "checkpoints", f"step_{steps:08d}.h5")
    out = os.path.join(tmp, name + "-hf")
    run([args.switchyard, "ckpt", "export", ckpt, "--format", "hf", "--output", out] +
        (["--allow-approximate"] if approximate else []))
    if approximate:
        return out, ckpt
    with h5py.File(ckpt, "r") as f:
        sy_loss = float(f["state/train"].attrs["last_val_loss"])
    with h5py.File(data, "r") as f:
        val = np.asarray(f["val"][:], dtype=np.int64)
    with open(os.path.join(out, "config.json")) as f:
        seq_len = json.load(f)["max_position_embeddings"]  # switchyard's model.seq_len
    windows = min(6, (len(val) - 1) // seq_len)
    hf_loss, arch = hf_val_loss(out, val.tolist(), seq_len, windows)
    rel = abs(hf_loss - sy_loss) / abs(sy_loss)
    ok = rel <= args.rel and arch == want_arch
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name:14s} {arch:20s} switchyard val_loss {sy_loss:.9f}  "
          f"transformers {hf_loss:.9f}  rel {rel:.2e}")
    return out, ckpt


def check_generation(name, ckpt, out, val, seq_len, prompts=8, prompt_len=6):
    """Greedy generation well past seq_len: transformers' generate() from the exported directory
    gives the tokens `switchyard sample --temperature 0` gives (past seq_len both attend over the
    last seq_len positions). Every other prompt is longer than seq_len (3 seq_len + 1 tokens),
    which both read through that window too. A difference is accepted only at a near-tie of the
    two logits."""
    global failures
    model = load_fp32(out).eval()
    n = 12 * seq_len
    bad = []
    for i in range(prompts):
        plen = prompt_len if i % 2 == 0 else 3 * seq_len + 1
        prompt = bytes(val[i * n:i * n + plen])
        if 0 in prompt or b"\n" in prompt:  # no NUL in argv; keep the prompt one line
            prompt = bytes(b if b not in (0, 10) else 32 for b in prompt)
        text = subprocess.run([args.switchyard, "sample", "--checkpoint", ckpt, "--prompt", prompt,
                               "--tokens", str(n), "--temperature", "0"],
                              capture_output=True, check=True).stdout
        want = list(text[len(prompt):-1])  # the prompt echoed, the bytes, a newline
        ids = torch.tensor([list(prompt)])
        with torch.no_grad():
            got = model.generate(ids, do_sample=False, max_new_tokens=n, min_new_tokens=n,
                                 pad_token_id=0)[0, len(prompt):].tolist()
            if got == want:
                continue
            j = next(k for k in range(n) if got[k] != want[k])
            logits = model(input_ids=torch.tensor([list(prompt) + want[:j]])).logits[0, -1]
            gap = abs(float(logits[got[j]] - logits[want[j]]))
        if gap > 1e-4:
            bad.append(f"prompt {prompt!r}: token {j} (position {len(prompt) + j}) is "
                       f"{got[j]}, switchyard's {want[j]} (logit gap {gap:.2e})")
    ok = not bad
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name:14s} greedy generate() = switchyard sample over "
          f"{prompts} prompts ({prompt_len} and {3 * seq_len + 1} tokens) x {n} tokens "
          f"(seq_len {seq_len})" + "".join("\n     " + b for b in bad))


with tempfile.TemporaryDirectory() as tmp:
    inputs = licence_texts()
    data = os.path.join(tmp, "bytes.h5")
    run([args.switchyard, "data", "prepare", "--output", data, "--input"] + inputs)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    check("routed", data, [], "MixtralForCausalLM", tmp)
    check("shared", data, ["moe.shared_experts=2"], "Qwen2MoeForCausalLM", tmp)
    check("untied", data, ["model.tie_embeddings=false"], "MixtralForCausalLM", tmp)
    check("no_norm_topk", data, ["moe.norm_topk=false"], "Qwen2MoeForCausalLM", tmp)
    check("gate_scale_2", data, ["moe.gate_scale=2", "moe.shared_experts=1",
                                 "model.tie_embeddings=false"], "Qwen2MoeForCausalLM", tmp)

    # A SentencePiece run: the exported tokenizer gives the ids switchyard stored for /val.
    bpe = os.path.join(tmp, "bpe.h5")
    run([args.switchyard, "data", "prepare", "--output", bpe, "--tokenizer", "bpe",
         "--vocab-size", "512", "--input"] + inputs)
    # Generation far past seq_len (a short one, so that attending over more positions than it
    # would change the logits; a model trained long enough to use its context), per architecture.
    with h5py.File(data, "r") as f:
        val_bytes = np.asarray(f["val"][:], dtype=np.int64).tolist()
    # Capacity dropping exports approximately, as the dropless model that `sample` runs too.
    for name, sets, arch in [("routed_T8", [], "MixtralForCausalLM"),
                             ("shared_T8", ["moe.shared_experts=1"], "Qwen2MoeForCausalLM"),
                             ("capacity_T8", ["moe.capacity_factor=1.0"], "MixtralForCausalLM")]:
        out, ckpt = check(name, data, sets + ["model.seq_len=8", "train.lr=1e-2"], arch, tmp,
                          steps=600, approximate="moe.capacity_factor=1.0" in sets)
        check_generation(name, ckpt, out, val_bytes, seq_len=8)

    # The exported tokenizer gives SentencePiece's ids, for each kind of SentencePiece model and
    # each architecture (transformers 5 picks the tokenizer class by the architecture too: its
    # LlamaTokenizer, which a Qwen2-MoE export named, is BPE whatever the model is). The user's
    # model has sentencepiece's default add_dummy_prefix: its leading spaces must survive.
    unigram = os.path.join(tmp, "unigram.h5")
    run([args.switchyard, "data", "prepare", "--output", unigram, "--tokenizer", "unigram",
         "--vocab-size", "512", "--input"] + inputs)
    spm.SentencePieceTrainer.train(input=inputs[0], model_prefix=os.path.join(tmp, "user"),
                                   vocab_size=400, model_type="bpe", byte_fallback=True,
                                   normalization_rule_name="identity",
                                   remove_extra_whitespaces=False)
    user = os.path.join(tmp, "user.h5")
    run([args.switchyard, "data", "prepare", "--output", user, "--tokenizer-model",
         os.path.join(tmp, "user.model"), "--input"] + inputs)
    text = open(inputs[0], encoding="utf-8").read()[:2000]
    for tok_name, path, vocab in [("bpe", bpe, 512), ("unigram", unigram, 512),
                                  ("user", user, 400)]:
        with h5py.File(path, "r") as f:
            sp = spm.SentencePieceProcessor(model_proto=bytes(f["tokenizer/model"][:]))
        for arch, sets in [("MixtralForCausalLM", []),
                           ("Qwen2MoeForCausalLM", ["moe.shared_experts=1"])]:
            name = f"{tok_name}_{arch[:5].lower()}"
            out, _ = check(name, path, [f"model.vocab_size={vocab}"] + sets, arch, tmp)
            tok = load_tokenizer(out, arch)
            for sample in [text, "  two leading spaces\n\tand a tab", " "]:
                want = sp.encode(sample)
                got = tok(sample, add_special_tokens=False)["input_ids"]
                ok = got == want and tok.decode(got) == sample
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} tokenizer      {name} {type(tok).__name__}: "
                      f"{len(got)} ids, {'the same as' if got == want else 'NOT the same as'} "
                      f"SentencePiece's for {sample[:12]!r}")

print(f"{failures} failed")
sys.exit(1 if failures else 0)
