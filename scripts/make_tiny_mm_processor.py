"""Build a tiny local LLaVA processor (tiny tokenizer + 8x8 CLIP image processor), no downloads.

    python scripts/make_tiny_mm_processor.py OUT_DIR

The agreement harness (dsforge/lf/probe.py) loads it with LLaMA-Factory's template "llava", so
image rows go through LLaMA-Factory's real multimodal path (placeholder checks, image loading).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_tokenizer import build as build_tokenizer  # noqa: E402


def build(out: str) -> None:
    from transformers import AutoTokenizer, CLIPImageProcessor, LlavaProcessor

    build_tokenizer(out)
    tok = AutoTokenizer.from_pretrained(out)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    images = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    proc = LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=4, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1, image_token="<image>")
    proc.save_pretrained(out)


if __name__ == "__main__":
    build(sys.argv[1])
