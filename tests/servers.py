"""Servers for tests: a fault-injecting proxy in front of a real server, and a fake OpenAI server.

Real vLLM / LLaMA-Factory servers are started with dsforge.servers.LocalServer (tests/conftest.py).

The proxy sits between dsforge and a real upstream server and, by a deterministic schedule,
answers some requests with 500 or 429, sleeps past the client's timeout, drops the connection,
or rewrites the reply (fewer choices than `n`, non-JSON text, a given content). Everything else
is forwarded unchanged.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dsforge.procs import free_port  # noqa: F401  (re-exported for tests)

ROOT = Path(__file__).resolve().parent.parent


class FaultProxy:
    """schedule: list of actions applied to request k (cycled): "ok", "500", "429", "slow", "drop",
    "one_choice" (keep only the first choice), "garbage" (200 with a non-JSON chat content),
    "no_response_format" (400 when the request carries response_format, like servers without it),
    or a callable(request_json, response_json) -> response_json.

    Timeouts come from the schedule only: a forwarded request whose upstream has not answered after
    `heartbeat_after` seconds is answered 200 with chunked whitespace until the upstream's reply
    (then its body; an upstream error status is then sent as that body under 200), so a client's
    read timeout shorter than `slow_s` fires on "slow" and never on a slow CPU server."""

    def __init__(self, upstream: str, schedule: list, slow_s: float = 3.0, heartbeat_after: float = 0.1):
        self.upstream = upstream.rstrip("/")
        self.heartbeat_after = heartbeat_after
        self.schedule = schedule
        self.slow_s = slow_s
        self.count = 0
        self.actions: dict[str, int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self._forward(None)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._forward(body)

            def _reply(self, status, data: bytes, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body):
                action = "ok"
                if body is not None and self.path.endswith("/chat/completions"):
                    with proxy.lock:
                        action = proxy.schedule[proxy.count % len(proxy.schedule)] if proxy.schedule else "ok"
                        proxy.count += 1
                        key = action if isinstance(action, str) else "custom"
                        proxy.actions[key] = proxy.actions.get(key, 0) + 1
                if action == "500":
                    return self._reply(500, b'{"error": {"message": "injected 500"}}')
                if action == "429":
                    return self._reply(429, b'{"error": {"message": "injected 429"}}', {"Retry-After": "0.1"})
                if action == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.connection.close()
                    return
                if action == "slow":
                    time.sleep(proxy.slow_s)
                if action == "no_response_format" and b"response_format" in body:
                    return self._reply(400, b'{"error": {"message": "response_format is not supported"}}')
                req = urllib.request.Request(proxy.upstream + self.path[len("/v1"):], data=body, method="POST" if body is not None else "GET",
                                             headers={"Content-Type": "application/json"})
                got: dict = {}

                def call():
                    try:
                        with urllib.request.urlopen(req, timeout=600) as r:
                            got["status"], got["data"] = r.status, r.read()
                    except urllib.error.HTTPError as err:
                        got["status"], got["data"] = err.code, err.read()
                    except OSError as err:
                        got["status"], got["data"] = 502, json.dumps({"error": {"message": str(err)}}).encode()

                upstream = threading.Thread(target=call, daemon=True)
                upstream.start()
                upstream.join(proxy.heartbeat_after)
                chunked = upstream.is_alive()
                if chunked:
                    # The upstream (a CPU server, maybe on a loaded machine) is slow: commit to 200 and send
                    # JSON-insignificant whitespace every 0.2 s, so the client's read timeout only ever fires on
                    # the schedule's "slow" action, never because real generation took long.
                    try:
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        while upstream.is_alive():
                            self.wfile.write(b"1\r\n \r\n")
                            self.wfile.flush()
                            upstream.join(0.2)
                    except (BrokenPipeError, ConnectionResetError):
                        return
                status, data = got["status"], got["data"]
                if status == 200 and body is not None and self.path.endswith("/chat/completions"):
                    resp = json.loads(data)
                    if action == "one_choice":
                        resp["choices"] = resp["choices"][:1]
                    elif action == "garbage":
                        for ch in resp["choices"]:
                            ch["message"]["content"] = "<<not json at all"
                    elif callable(action):
                        resp = action(json.loads(body), resp)
                    data = json.dumps(resp).encode()
                try:
                    if chunked:
                        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
                    else:
                        self._reply(status, data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class FakeOpenAI:
    """A real HTTP server speaking the OpenAI chat API: serves `models`, answers with `reply` or an error."""

    def __init__(self, models=("judge-a",), reply='{"rationale": "fine", "score": 4}', fail_status=None,
                 delay_s: float = 0.0):
        self.models, self.reply, self.fail_status, self.delay_s = list(models), reply, fail_status, delay_s
        self.requests = []
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.requests.append(("GET", self.path, dict(self.headers)))
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                fake.requests.append(("POST", self.path, dict(self.headers)))
                if body.get("model") not in fake.models:
                    return self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
                time.sleep(fake.delay_s)   # a slow server (as a CPU one on a loaded machine)
                if fake.fail_status:
                    return self._send(fake.fail_status, {"error": {"message": "injected failure"}})
                n = body.get("n") or 1
                self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": i, "finish_reason": "stop", "logprobs": None,
                                              "message": {"role": "assistant", "content": fake.reply}}
                                             for i in range(n)],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
