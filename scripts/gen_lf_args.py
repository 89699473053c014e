"""Write dsforge/lf/train_args.json: every key `llamafactory-cli train` accepts, with its type, read
from LLaMA-Factory's own argument dataclasses (ModelArguments, DataArguments, TrainingArguments =
HF Seq2SeqTrainingArguments + LLaMA-Factory's additions, FinetuningArguments, GeneratingArguments),
and the chat template names it has registered (the values `template` accepts).

Run it with LLaMA-Factory's interpreter (the pinned one: .venv-lf):

    .venv-lf/bin/python scripts/gen_lf_args.py [OUT]        # default: dsforge/lf/train_args.json

`dsforge train` checks the resolved YAML against this table before anything is launched; a test
regenerates it where .venv-lf exists and fails when the shipped table has drifted.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.metadata
import inspect
import json
import os
import re
import sys
import types
import typing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "dsforge", "lf", "train_args.json")


def _kinds(tp) -> tuple[set[str], list | None]:
    """The JSON/YAML kinds a type accepts (null, bool, int, float, str, list, dict, any) and, for an
    enum or Literal, its allowed values."""
    if tp is type(None):
        return {"null"}, None
    if tp is typing.Any:
        return {"any"}, None
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        kinds: set[str] = set()
        choice_sets = []
        for arg in typing.get_args(tp):
            k, c = _kinds(arg)
            kinds |= k
            if c is not None:
                choice_sets.append(c)
        # an enum next to plain str: transformers converts the str to the enum, so the choices hold
        other = kinds - {"null", "str"}
        choices = choice_sets[0] if len(choice_sets) == 1 and not other else None
        return kinds, choices
    if origin is typing.Literal:
        vals = list(typing.get_args(tp))
        return {_kind_of(v) for v in vals}, vals
    if origin in (list, tuple, set) or tp in (list, tuple, set):
        return {"list"}, None
    if origin is dict or tp is dict:
        return {"dict"}, None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"str"}, [e.value for e in tp]
    for py, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if tp is py:
            return {name}, None
    return {"any"}, None


def _kind_of(v) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", type(None): "null"}.get(type(v), "any")


def _split_fields(cls) -> set[str]:
    """Fields LLaMA-Factory splits on commas in __post_init__ (`split_arg(self.x)`): a YAML list works too."""
    out: set[str] = set()
    for klass in cls.__mro__:
        post = klass.__dict__.get("__post_init__")
        if post is None:
            continue
        try:
            src = inspect.getsource(post)
        except (OSError, TypeError):
            continue
        out |= set(re.findall(r"split_arg\(self\.(\w+)\)", src))
    return out


def build() -> dict:
    sys.path.insert(0, os.path.join(ROOT, "dsforge", "lf"))
    import shim

    shim.install()
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    from llamafactory.data.template import TEMPLATES
    from llamafactory.hparams.parser import _TRAIN_ARGS

    keys: dict[str, dict] = {}
    for cls in _TRAIN_ARGS:
        hints = typing.get_type_hints(cls)
        split = _split_fields(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            kinds, choices = _kinds(hints.get(f.name, typing.Any))
            if f.name in split:
                kinds.add("list")
            entry = {"types": sorted(kinds), "group": cls.__name__}
            if choices is not None:
                entry["choices"] = choices
            help_ = (f.metadata or {}).get("help") or ""
            if "deprecated" in help_.lower():
                entry["deprecated"] = help_.strip()
            keys[f.name] = entry
    # `template` is free text in the dataclass, but LLaMA-Factory raises for a name it has not registered
    keys["template"]["choices"] = sorted(TEMPLATES)
    return {
        "generated_by": "scripts/gen_lf_args.py",
        "llamafactory": importlib.metadata.version("llamafactory"),
        "transformers": importlib.metadata.version("transformers"),
        "keys": dict(sorted(keys.items())),
    }


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else OUT
    text = json.dumps(build(), indent=1, sort_keys=False) + "\n"
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
