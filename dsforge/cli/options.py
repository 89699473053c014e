"""Click options generated from a stage's config model (dsforge.stages): one decorator, `options_from`.

Each CLI-visible field becomes one option: its flag and short name from the field's `Cli` marker, its
help from the description, its default from the field (or the marker), and its type from the
annotation and constraints: bool -> flag (`--no-x` when True by default), Literal / Cli.choices ->
Choice, int -> IntRange (ge/le), float -> FiniteFloat (ge/gt/le/lt, nan refused), tuple[float, ...]
-> an X,Y list, tuple[str, ...] -> a repeatable option, dict[str, str] (kind map) -> repeatable
DEST=SOURCE, dict (kind sets) -> repeatable KEY=VALUE. The command receives the built model as `cfg`;
a value the model refuses is a usage error naming the flag (exit 2).
"""

from __future__ import annotations

import functools
import types
import typing

import click
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

from dsforge.cli.types import FiniteFloat, FloatList, MapPair, OutPath, Url
from dsforge.errors import UsageError
from dsforge.stages import FieldError, cli_of, flag_of


def _bare(annotation):
    """(type without None, optional?) of an annotation such as `int | None`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def _bounds(info) -> dict:
    out = {}
    for m in info.metadata:
        if isinstance(m, Ge):
            out["min"] = m.ge
        elif isinstance(m, Gt):
            out["min"], out["min_open"] = m.gt, True
        elif isinstance(m, Le):
            out["max"] = m.le
        elif isinstance(m, Lt):
            out["max"], out["max_open"] = m.lt, True
    return out


def option_for(model: type[BaseModel], name: str) -> click.Option | None:
    """The click.Option of field `name` of `model`, or None for a recipe/library-only field."""
    info = model.model_fields[name]
    c = cli_of(model, name)
    if not c.cli:
        return None
    flag = flag_of(model, name)
    decls = [flag] + ([c.short] if c.short else []) + [name]
    kind, _ = _bare(info.annotation)
    default = c.default if c.default is not None else (None if info.is_required() else info.get_default(
        call_default_factory=True))
    kw: dict = {"help": info.description,
                "show_default": not (default is None or default is False or default in ((), {}, ""))}
    if kind is bool:
        return click.Option(decls, is_flag=True, default=False, help=info.description)
    b = _bounds(info)
    if c.choices or typing.get_origin(kind) is typing.Literal:
        kw["type"] = click.Choice(list(c.choices or typing.get_args(kind)))
    elif kind is int and not b:
        kw["type"] = click.INT
    elif kind is int:
        kw["type"] = click.IntRange(b.get("min"), b.get("max"), min_open=b.get("min_open", False),
                                    max_open=b.get("max_open", False))
    elif kind is float:
        kw["type"] = FiniteFloat(b.get("min"), b.get("max"), min_open=b.get("min_open", False),
                                 max_open=b.get("max_open", False))
    elif c.kind == "floats":
        kw["type"] = FloatList(0)
        default = ",".join(str(x) for x in default) if default else None
    elif c.kind == "map":
        kw.update(type=MapPair(), multiple=True, metavar=c.metavar or "DEST=SOURCE")
        default = None
    elif c.kind == "sets":
        kw.update(multiple=True, metavar=c.metavar or "KEY=VALUE")
        default = None
    elif typing.get_origin(kind) is tuple:
        kw["multiple"] = True
        default = None
    elif c.kind == "url":
        kw["type"] = Url()
    elif c.kind == "json_out":
        kw["type"] = OutPath((".jsonl", ".json"))
    if c.metavar and "metavar" not in kw:
        kw["metavar"] = c.metavar
    kw["default"] = None if c.required else default
    kw["required"] = c.required or info.is_required()
    return click.Option(decls, **kw)


def _value(model: type[BaseModel], name: str, raw):
    """A parsed option value in the field's shape (X,Y text -> tuple, DEST=SOURCE list -> dict, ...)."""
    c = cli_of(model, name)
    if c.invert:
        return not raw
    if c.kind == "floats":
        return tuple(float(x) for x in raw.split(","))
    if c.kind == "csv":   # repeatable, each value may list several: --carry a,b --carry c
        return tuple(f.strip() for v in raw for f in v.split(",") if f.strip())
    if c.kind == "map":
        return mapping_of(raw)
    if c.kind == "sets":
        from dsforge.train import parse_sets

        return parse_sets(raw, flag_of(model, name))
    return raw


def mapping_of(pairs: tuple[str, ...]) -> dict[str, str]:
    """--map DEST=SOURCE values -> {dest: source}; UsageError for a malformed or repeated DEST."""
    out = {}
    for p in pairs:
        dst, sep, src = p.partition("=")
        if not sep or not dst or not src:
            raise UsageError(f"--map {p!r} is not DEST=SOURCE", "e.g. --map instruction=question --map output=answer")
        if dst.strip() in out:
            raise UsageError(f"--map {dst.strip()}= is given twice", "map each destination once")
        out[dst.strip()] = src.strip()
    return out


def options_from(model: type[BaseModel], *, exclude: tuple[str, ...] = ()):
    """Decorator: add one click option per CLI-visible field of `model` (but `exclude`) and call the
    command with `cfg=model(...)` instead of those keyword arguments. A value the model refuses is a
    click.BadParameter naming the flag (exit 2)."""
    names = [n for n in model.model_fields if n not in exclude and cli_of(model, n).cli]

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            # generated options, and arguments named as a field (train's STAGE)
            values = {n: _value(model, n, kwargs.pop(n)) for n in model.model_fields if n in kwargs}
            values = {n: v for n, v in values.items() if v is not None}
            try:
                cfg = model.build(**values)
            except FieldError as err:
                name = err.field.split(".")[0]
                flag = flag_of(model, name) if name in model.model_fields else err.field
                raise click.UsageError(f"{flag}: {err.problem}") from None
            return fn(*args, cfg=cfg, **kwargs)

        for n in reversed(names):
            click.decorators._param_memo(wrapper, option_for(model, n))
        return wrapper

    return deco


__all__ = ["options_from", "option_for", "mapping_of"]
