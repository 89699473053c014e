"""Build a tiny byte-level BPE tokenizer with a ChatML chat template, locally (no hub).

    python scripts/make_tiny_tokenizer.py OUT_DIR

For fast tests: works with any transformers >= 4.40 plus tokenizers.
"""

import sys


def build(out: str) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["hello world this is a tiny corpus for a tiny tokenizer",
              "The quick brown fox jumps over the lazy dog 0123456789",
              "question answer system user assistant lorem ipsum dolor document"]
    tok.train_from_iterator(corpus * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    fast.save_pretrained(out)


if __name__ == "__main__":
    build(sys.argv[1])
