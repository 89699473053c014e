"""dsforge.servers: vLLM's CPU defaults written once (engine keywords == server flags), and one local
server's life (start, wait until ready, stop) on a real child process."""

import socket
import sys

import pytest

from dsforge import servers
from dsforge.errors import DsforgeError, UsageError
from dsforge.hardware import native_bf16

MODEL = "/nonexistent/model"   # nothing is loaded: only keywords and argv are built


def test_cpu_defaults_fill_only_what_is_open():
    kw, flags = servers.vllm_cpu_defaults()
    assert kw == {"dtype": "float32", "enforce_eager": True, "max_num_batched_tokens": 8192,
                  "enable_chunked_prefill": False, "kv_cache_memory_bytes": 2 * 2**30}
    assert flags == ["--dtype", "float32", "--enforce-eager", "--max-num-batched-tokens", "8192",
                     "--no-enable-chunked-prefill", "--kv-cache-memory-bytes", str(2 * 2**30)]
    kw, flags = servers.vllm_cpu_defaults({"dtype": "bfloat16", "max_model_len": 16384, "gpu_memory_utilization": 0.3})
    assert "dtype" not in kw and "kv_cache_memory_bytes" not in kw and kw["max_num_batched_tokens"] == 16384
    assert "--dtype" not in flags and "--kv-cache-memory-bytes" not in flags


def test_a_long_context_is_capped_on_cpu_in_engine_and_server_alike(tmp_path):
    """Without chunked prefill vLLM refuses max_num_batched_tokens < max_model_len: a 32k model gets 8192."""
    from dsforge.engines.vllm import VLLMEngine, VLLMOptions

    (tmp_path / "config.json").write_text('{"max_position_embeddings": 32768}')
    kw = VLLMEngine(str(tmp_path), VLLMOptions()).engine_kwargs(cpu=True)
    cmd, _ = servers.vllm_command(str(tmp_path), name="m", gpu=False)
    assert kw["max_model_len"] == kw["max_num_batched_tokens"] == 8192
    assert cmd[cmd.index("--max-model-len") + 1] == cmd[cmd.index("--max-num-batched-tokens") + 1] == "8192"
    kw = VLLMEngine(str(tmp_path), VLLMOptions(max_model_len=16384)).engine_kwargs(cpu=True)
    assert kw["max_model_len"] == kw["max_num_batched_tokens"] == 16384
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 4096}')
    assert "max_model_len" not in VLLMEngine(str(tmp_path), VLLMOptions()).engine_kwargs(cpu=True)


def test_server_flags_follow_the_users_extra_flags():
    cmd, env = servers.vllm_command(MODEL, name="m", gpu=False, extra=("--max-model-len", "12000"))
    assert cmd[cmd.index("--max-num-batched-tokens") + 1] == "12000" and cmd[-2:] == ["--max-model-len", "12000"]
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    cmd, _ = servers.vllm_command(MODEL, name="m", gpu=True)
    assert not {"--dtype", "--enforce-eager", "--kv-cache-memory-bytes"} & set(cmd)
    for spelled, tokens in (("32k", "32000"), ("--max-model-len=16K", "16384")):   # vLLM's own spellings
        extra = (spelled,) if spelled.startswith("--") else ("--max-model-len", spelled)
        cmd, _ = servers.vllm_command(MODEL, name="m", gpu=False, extra=extra)
        assert cmd[cmd.index("--max-num-batched-tokens") + 1] == tokens
    with pytest.raises(UsageError, match="--max-model-len"):
        servers.vllm_command(MODEL, name="m", gpu=False, extra=("--max-model-len", "lots"))


def test_offline_engine_and_server_get_the_same_cpu_settings():
    """The offline engine's vllm.LLM keywords and the server's argv, read back by vLLM's own parser, agree
    on every row of CPU_VLLM (they are built by different code: engines/vllm.py and servers.vllm_command)."""
    pytest.importorskip("vllm")
    from vllm.engine.arg_utils import AsyncEngineArgs

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # older vLLM
        from vllm.utils import FlexibleArgumentParser

    from dsforge.engines.vllm import VLLMEngine, VLLMOptions

    engine_kw = VLLMEngine(MODEL, VLLMOptions()).engine_kwargs(cpu=True)
    cmd, _ = servers.vllm_command(MODEL, name="m", gpu=False)
    argv = cmd[cmd.index("vllm.entrypoints.openai.api_server") + 1:]
    for flag in ("--served-model-name", "--host", "--port"):   # the server's own flags, not engine arguments
        i = argv.index(flag)
        del argv[i:i + 2]
    parsed = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser()).parse_args(argv)
    for key, _, value in servers.CPU_VLLM:
        assert engine_kw[key] == value, key
        assert getattr(parsed, key) == engine_kw[key], key


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_local_server_starts_waits_and_stops_its_process(tmp_path):
    """A real child answering GET /v1/models (python's http.server over a folder holding that file)."""
    (tmp_path / "www" / "v1").mkdir(parents=True)
    (tmp_path / "www" / "v1" / "models").write_text('{"data": []}')
    port = servers.procs.free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path / "www")]
    server = servers.LocalServer(cmd, {}, "x", port=port, log_path=str(tmp_path / "server.log"), ready_timeout=60)
    with server as s:
        assert s.url == f"http://127.0.0.1:{port}/v1" and _port_open(port)
    assert server.proc.poll() is not None and not _port_open(port)
    assert "GET /v1/models" in server.log_tail()
    server.stop()   # twice is fine


def test_local_server_that_dies_names_its_log(tmp_path):
    cmd = [sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"]
    server = servers.LocalServer(cmd, {}, "x", port=servers.procs.free_port(), log_path=str(tmp_path / "s.log"))
    with pytest.raises(DsforgeError, match="exited with code 3") as err:
        with server:
            pass
    assert str(tmp_path / "s.log") in err.value.hint and "no model here" in server.log_tail()


X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 amx_bf16\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_native_bf16_from_cpu_flags():
    from dsforge.hardware import cpu_flags

    assert native_bf16(cpu_flags(X86_AVX2), "x86_64") == (False, "CPU without native bf16: no avx512_bf16/amx_bf16")
    assert native_bf16(cpu_flags(X86_BF16), "x86_64") == (True, "CPU has avx512_bf16+amx_bf16")
    assert native_bf16(cpu_flags(ARM_BF16), "aarch64") == (True, "CPU has bf16")
    assert native_bf16(cpu_flags(ARM_BF16), "x86_64")[0] is False
    assert native_bf16(set(), "x86_64") == (False, "CPU flags unreadable (no /proc/cpuinfo)")
