"""Make LLaMA-Factory importable on machines whose torchaudio/torchvision cannot load.

LLaMA-Factory 0.9.5 imports torchaudio at module level (data/mm_plugin.py) although text-only
training never calls it. PyPI's torchaudio wheels are CUDA builds that fail to load on CPU-only
machines. This module installs a stand-in that only fails when audio is actually used. It runs
inside LLaMA-Factory's own interpreter and must not import dsforge or anything outside stdlib.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

_OPTIONAL = ("torchaudio",)


class _Missing(types.ModuleType):
    def __getattr__(self, attr):  # noqa: D105
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise ImportError(
            f"{self.__name__} is not usable in this environment (dsforge launched LLaMA-Factory "
            f"without it for text-only work); install a working {self.__name__} for audio data."
        )


def _usable(name: str) -> bool:
    if importlib.util.find_spec(name) is None:
        return False
    try:
        importlib.import_module(name)
        return True
    except Exception:  # a CUDA-only wheel raises OSError/RuntimeError, not ImportError
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        return False


def install() -> list[str]:
    """Install stand-ins for the optional modules that cannot load; return their names."""
    stubbed = []
    for name in _OPTIONAL:
        if name in sys.modules or _usable(name):
            continue
        module = _Missing(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.__path__ = []  # so "import torchaudio.functional" reaches __getattr__ lazily
        sys.modules[name] = module
        stubbed.append(name)
    return stubbed


def fix_trl_availability() -> list[str]:
    """trl 0.24 keeps `_X_available = _is_package_available("X")` and tests it as a bool, but transformers
    5.x's `_is_package_available` returns a tuple (found, version), which is always true: trl then
    imports mergekit, deepspeed, ... that are not installed, and `DPOTrainer` fails to import
    ("No module named 'mergekit'"). Turn those tuples back into their bool; return the names fixed."""
    try:
        import trl.import_utils as iu
    except Exception:  # no trl, or one that cannot load: nothing to fix here
        return []
    fixed = []
    for name, value in list(vars(iu).items()):
        if name.startswith("_") and name.endswith("_available") and isinstance(value, tuple):
            setattr(iu, name, bool(value[0]))
            fixed.append(name)
    return fixed
