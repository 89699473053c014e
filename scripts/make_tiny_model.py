"""Build a tiny random Llama model with the tiny local tokenizer (no hub), for fast tests.

    python scripts/make_tiny_model.py OUT_DIR

Random weights: it produces gibberish, quickly. Works with transformers 4.45+ and 5.x, so the
same folder loads in the core env (hf engine) and in LLaMA-Factory's env (training tests).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def build(out: str, *, layers: int = 2, hidden: int = 64) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    import make_tiny_tokenizer

    make_tiny_tokenizer.build(out)
    tok = AutoTokenizer.from_pretrained(out)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, bos_token_id=None,
                      eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = [cfg.eos_token_id, tok.eos_token_id]
    model.save_pretrained(out)


if __name__ == "__main__":
    build(sys.argv[1])
