"""Build a random-weight causal LM of a known shape from a carried config.json + tokenizer (weights cannot
travel to the GPU machines; nothing can be downloaded there).

    python scripts/gpu/make_random_model.py CONFIG_AND_TOKENIZER_DIR OUT_DIR [--shape smollm2-135m|qwen2.5-0.5b|qwen2.5-1.5b]

The tokenizer (and its vocabulary size) always comes from CONFIG_AND_TOKENIZER_DIR; --shape changes only
the transformer's width and depth (Llama architecture), so throughput is that of a model of this size.
"""

import argparse
import os
import shutil

SHAPES = {   # hidden, intermediate, layers, heads, kv heads (the named models' own numbers)
    "smollm2-135m": None,   # the carried config.json as it is
    "qwen2.5-0.5b": (896, 4864, 24, 14, 2),
    "qwen2.5-1.5b": (1536, 8960, 28, 12, 2),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    args = ap.parse_args()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(args.src)
    if SHAPES[args.shape]:
        h, inter, layers, heads, kv = SHAPES[args.shape]
        cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers = h, inter, layers
        cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim = heads, kv, h // heads
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out)
    for name in os.listdir(args.src):
        if name.startswith("tokenizer") or name.endswith(".jinja") or name == "special_tokens_map.json":
            shutil.copy(os.path.join(args.src, name), args.out)
    print(f"{args.out}: {args.shape}, {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, random")


if __name__ == "__main__":
    main()
