"""Hand-made candidates for the review tests: system prompt and earlier turns, markdown, code, a
table, a long answer, and (optionally) an answer carrying HTML/JS that must stay text."""

import json

from dsforge.records import prompt_id

EVIL = '<script>window.__pwned = 1; alert("x")</script><img src=x onerror="window.__pwned=2"> plain <b>bold?</b>'


def candidate_rows(prompts: int = 8, evil: bool = False, judge: bool = True) -> list[dict]:
    rows = []
    for p in range(prompts):
        msgs = [{"role": "system", "content": "You are a careful Python tutor. Answer briefly."},
                {"role": "user", "content": f"What does `len` do? (q{p})"},
                {"role": "assistant", "content": "It returns the number of items."},
                {"role": "user", "content": f"Show an example for question {p}, with code."}]
        texts = [f"Here is an example:\n\n```python\nxs = [1, 2, 3]\nprint(len(xs))  # 3\n```\n\n"
                 f"`len` works on **any** sized container. ({p})",
                 "len(x) gives the size. For example len('abc') == 3. " + "More detail follows. " * 80 + f"({p})",
                 f"I am not sure. Maybe use a loop to count?\n\n1. start at 0\n2. add one per item\n\n"
                 f"| input | len |\n|---|---|\n| [] | 0 |\n| 'ab' | 2 |\n\n({p})"]
        if evil and p == 0:
            texts.append(EVIL)
        for i, t in enumerate(texts):
            row = {"prompt_id": prompt_id(msgs), "messages": msgs, "text": t, "model": "smol",
                   "temperature": [0.7, 1.0][i % 2], "sample_index": i, "finish_reason": "stop",
                   "completion_tokens": len(t) // 4}
            if judge:
                row["judge"] = {"kind": "llm", "model": "judge-x", "rubric": "additive", "mode": "pointwise",
                                "score": float((3 - i + p) % 4 + 1)}
            rows.append(row)
    return rows


def write_candidates(path, **kw) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in candidate_rows(**kw):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return str(path)
