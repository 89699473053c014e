"""(Kept as the evidence of docs/loop-experiments.md; not run by CI.) Throwaway hyperparameter sweep on the device GPU (torch + peft, fp32), mirroring dsforge's CPU path:
sample (n per prompt, temp 1) -> numeric verifier -> correct-vs-wrong pairs (dsforge.verifier_pairs)
-> LoRA DPO (sigmoid) + pref_ftx * mean NLL of chosen (LLaMA-Factory's formula) -> greedy eval.
"""
import json, math, os, random, sys, time
from collections import Counter, defaultdict

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import LoraConfig, get_peft_model

sys.path.insert(0, os.getcwd())
from dsforge.verify import get_verifier
from dsforge.verifier_pairs import select_correct_vs_wrong, pair_yield

H = "/tmp/m"
V = get_verifier("numeric")
dev = "cuda"
tok = AutoTokenizer.from_pretrained(H)
tok.padding_side = "left"
EOS = "<|im_end|>"


def rows(name):
    return [json.loads(l) for l in open(f"{H}/{name}")]


def load_base():
    return AutoModelForCausalLM.from_pretrained(H, torch_dtype=torch.float32).to(dev)


def prompt_text(q):
    return tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def generate(model, qs, n=1, temp=0.0, max_new=64, bs=512):
    model.eval()
    out = []
    texts = [prompt_text(q) for q in qs]
    per = max(1, bs // n)
    for i in range(0, len(texts), per):
        enc = tok(texts[i:i + per], return_tensors="pt", padding=True).to(dev)
        kw = dict(do_sample=True, temperature=temp, top_p=1.0, num_return_sequences=n) if temp > 0 else dict(do_sample=False)
        g = model.generate(**enc, max_new_tokens=max_new, pad_token_id=tok.pad_token_id or tok.eos_token_id,
                           eos_token_id=tok.convert_tokens_to_ids(EOS), **kw)
        g = g[:, enc["input_ids"].shape[1]:]
        for j in range(g.shape[0]):
            ids = g[j].tolist()
            trunc = tok.convert_tokens_to_ids(EOS) not in ids
            out.append((tok.decode(ids, skip_special_tokens=True).strip(), trunc, sum(1 for t in ids if t != (tok.pad_token_id or -1))))
    return [out[k * n:(k + 1) * n] for k in range(len(qs))]


def evaluate(model, items):
    res = generate(model, [r["instruction"] for r in items])
    out = []
    for r, ((text, trunc, ntok),) in zip(items, res):
        v = V.check(text, r["reference"], r)
        out.append((int(v.correct), int(v.format_ok), ntok))
    return out


def ci(xs, B=2000, seed=0):
    rng = random.Random(seed); n = len(xs)
    ms = sorted(sum(xs[rng.randrange(n)] for _ in range(n)) / n for _ in range(B))
    return 100 * ms[int(.025 * B)], 100 * ms[int(.975 * B)]


def summarize(tag, ev, base, held_n):
    parts = []
    for fam, sl in (("arith", slice(0, held_n)), ("units", slice(held_n, None))):
        for k, nm in ((0, "len"), (1, "str")):
            xs = [e[k] for e in ev[sl]]; bs = [e[k] for e in base[sl]]
            d = [x - y for x, y in zip(xs, bs)]
            lo, hi = ci(d)
            parts.append(f"{fam}.{nm} {100*sum(xs)/len(xs):5.1f} (d {100*sum(d)/len(d):+5.1f} [{lo:+.1f},{hi:+.1f}])")
        parts.append(f"{fam}.tok {sum(e[2] for e in ev[sl])/len(ev[sl]):.0f}")
    print(f"[{tag}] " + "  ".join(parts), flush=True)


def make_pairs(model, train, n, k, temp=1.0):
    res = generate(model, [r["instruction"] for r in train], n=n, temp=temp)
    groups, drops, pairs, rng = {}, Counter(), [], random.Random(0)
    acc = []
    for r, samples in zip(train, res):
        seen, cands = set(), []
        for text, trunc, ntok in samples:
            if trunc or not text or text in seen:
                continue
            seen.add(text)
            v = V.check(text, r["reference"], r)
            acc.append(v.correct)
            cands.append({"text": text, "judge": {"kind": "verifier", "correct": v.correct, "score": float(v.correct)}})
        groups[r["instruction"]] = cands
        for c, rj in select_correct_vs_wrong(cands, k, rng, drops):
            pairs.append((r["instruction"], c["text"], rj["text"]))
    py = pair_yield(groups, drops)
    cl = sum(len(c) > len(rj) for _, c, rj in pairs) / max(1, len(pairs))
    print(f"  sample: acc {100*sum(acc)/max(1,len(acc)):.1f}% yield {py['rate']} {py['no_pair']} pairs {len(pairs)} chosen_longer {cl:.2f}", flush=True)
    return pairs


def seq_logps(model, prompts, answers):
    """Summed and mean log-prob of each answer (+ EOS) given its prompt; right padding."""
    ids, labels = [], []
    for p, a in zip(prompts, answers):
        pi = tok(prompt_text(p), add_special_tokens=False)["input_ids"]
        ai = tok(a + EOS + "\n", add_special_tokens=False)["input_ids"]
        ids.append(pi + ai); labels.append([-100] * len(pi) + ai)
    L = max(map(len, ids))
    pad = tok.pad_token_id or 0
    x = torch.tensor([s + [pad] * (L - len(s)) for s in ids], device=dev)
    y = torch.tensor([s + [-100] * (L - len(s)) for s in labels], device=dev)
    att = (torch.arange(L, device=dev)[None] < torch.tensor([len(s) for s in ids], device=dev)[:, None]).long()
    logits = model(input_ids=x, attention_mask=att).logits[:, :-1].float()
    y = y[:, 1:]
    mask = y != -100
    lp = torch.gather(logits.log_softmax(-1), 2, y.clamp(min=0).unsqueeze(2)).squeeze(2) * mask
    return lp.sum(1), lp.sum(1) / mask.sum(1)


def train_dpo(base, pairs, lr, epochs, beta, ftx, rank, bs=8, seed=0, target="all"):
    torch.manual_seed(seed)
    tm = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] if target == "all" else target.split(",")
    model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=tm))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    steps = math.ceil(len(pairs) / bs) * epochs
    warm = max(1, int(0.1 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    step, accs, losses = 0, [], []
    for ep in range(int(math.ceil(epochs))):
        order = list(range(len(pairs))); rng.shuffle(order)
        for i in range(0, len(order), bs):
            if step >= steps:
                break
            b = [pairs[j] for j in order[i:i + bs]]
            P = [x[0] for x in b] * 2; A = [x[1] for x in b] + [x[2] for x in b]
            model.train()
            with torch.no_grad(), model.disable_adapter():
                ref, _ = seq_logps(model, P, A)
            pol, pol_avg = seq_logps(model, P, A)
            n = len(b)
            logits = beta * ((pol[:n] - ref[:n]) - (pol[n:] - ref[n:]))
            loss = (-F.logsigmoid(logits) + ftx * (-pol_avg[:n])).mean()
            opt.zero_grad(); loss.backward(); opt.step(); sched.step(); step += 1
            accs.append((logits > 0).float().mean().item()); losses.append(loss.item())
    print(f"  train: {step} steps, loss {sum(losses[:5])/5:.3f} -> {sum(losses[-5:])/5:.3f}, reward acc last {sum(accs[-10:])/10:.2f}", flush=True)
    return model.merge_and_unload()


def main():
    mode = sys.argv[1]
    held, ctrl, train = rows("heldout.jsonl"), rows("control.jsonl"), rows("train.jsonl")
    items = held + ctrl
    t = time.time()
    base = load_base()
    base_ev = evaluate(base, items)
    summarize("base", base_ev, base_ev, len(held))
    print(f"  base eval {time.time()-t:.0f}s", flush=True)
    if mode == "sweep":
        P = int(sys.argv[2]); n = int(sys.argv[3]); k = int(sys.argv[4])
        pairs = make_pairs(base, train[:P], n, k)
        for spec in sys.argv[5:]:
            lr, ep, beta, ftx, rank = spec.split(":")
            t = time.time()
            m = train_dpo(load_base(), pairs, float(lr), float(ep), float(beta), float(ftx), int(rank))
            summarize(f"lr={lr} ep={ep} beta={beta} ftx={ftx} r={rank} P={P} n={n} k={k}", evaluate(m, items), base_ev, len(held))
            print(f"  {time.time()-t:.0f}s", flush=True)
            del m; torch.cuda.empty_cache()
    elif mode == "rounds":
        R, P, n, k = map(int, sys.argv[2:6]); lr, ep, beta, ftx, rank = sys.argv[6].split(":")
        model = base
        for r in range(R):
            t = time.time()
            pairs = make_pairs(model, train[r * P:(r + 1) * P], n, k)
            model = train_dpo(model, pairs, float(lr), float(ep), float(beta), float(ftx), int(rank), seed=r)
            summarize(f"round {r+1}", evaluate(model, items), base_ev, len(held))
            print(f"  {time.time()-t:.0f}s", flush=True)


if __name__ == "__main__":
    main()
