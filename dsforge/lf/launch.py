"""Run `llamafactory-cli SUBCOMMAND ...` inside LLaMA-Factory's interpreter, tolerating a torchaudio
that cannot load (CPU-only machines): the shim puts a stand-in module in sys.modules for this
process only; site-packages are not touched. Stdlib + llamafactory only; no dsforge imports.

    python launch.py train cfg.yaml [key=value ...]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shim  # noqa: E402



def load_weights_in(name: str) -> None:
    """Make LLaMA-Factory load the model's weights in dtype `name` (float32, bfloat16, float16). Its loader
    (0.9.5, model/loader.py) passes torch_dtype="auto", i.e. the config's dtype (bfloat16 for most chat
    models) whatever bf16/fp16 say, so bf16: false on a CPU still computed in emulated bf16 (~20x slower
    on AVX2). The config's dtype is set before the model is built; the dtype loaded is printed."""
    import llamafactory.model
    import torch
    from llamafactory.model import loader

    dtype = getattr(torch, name)
    load_config, load_model = loader.load_config, loader.load_model

    def config_in_dtype(model_args):
        config = load_config(model_args)
        config.dtype = dtype   # what torch_dtype="auto" reads (transformers >= 4.56; older: torch_dtype)
        if "torch_dtype" in vars(config):
            config.torch_dtype = dtype
        return config

    def reporting_load_model(*args, **kwargs):
        model = load_model(*args, **kwargs)
        print(f"[dsforge] model weights loaded in {next(model.parameters()).dtype}", flush=True)
        return model

    loader.load_config = config_in_dtype   # looked up at call time inside loader.load_model
    llamafactory.model.load_model = reporting_load_model   # the workflows import it from the package


if __name__ == "__main__":
    stubbed = shim.install()
    if stubbed:
        print(f"[dsforge] {', '.join(stubbed)} cannot load here; using a stand-in (text-only work)", flush=True)
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    shim.fix_trl_availability()
    if os.environ.get("DSFORGE_MODEL_DTYPE") and sys.argv[1:2] == ["train"]:   # dsforge train on a CPU
        load_weights_in(os.environ["DSFORGE_MODEL_DTYPE"])
    from llamafactory.cli import main

    sys.argv = ["llamafactory-cli", *sys.argv[1:]]
    sys.exit(main())
