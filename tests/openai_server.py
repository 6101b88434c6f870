"""A scripted OpenAI chat-completions server on 127.0.0.1, for testing HTTP judges offline.

`ScriptedOpenAIServer` is a real `http.server.ThreadingHTTPServer` (port 0, background thread). It
answers `POST /v1/chat/completions` with scripted `Reply`s and records every request it received
(headers, parsed JSON body, arrival and end times), plus the largest number of requests in flight.

Scripts, tried in this order for each request:
- `server.handler = fn`: `fn(body: dict) -> Reply` (a function of the request);
- `server.by_key = {"marker": [Reply, ...]}`: the first key found in the request's first user text
  picks the queue; replies are used in order and the last one repeats (order-independent, so it
  suits concurrent requests);
- `server.queue`: a deque of `Reply`s for the whole server, used in order (the last one repeats).

The judge's preflight (GET /v1/models, and a chat holding PREFLIGHT_TEXT answered `{"ok": true}` or
`preflight_reply`) is recorded in `checks`, never in `requests`, and consumes no scripted reply.
`GET /health` answers 200 and `GET /v1/models` lists `served_models` (set it to None for a server
without that route: 404). With `api_key` set, every request needs that bearer key (else 401).

A `Reply` is a 200 completion (`content`, `refusal`, `finish_reason`) or an error (`status` != 200,
`message`), optionally after `delay` seconds (a slow server; longer than the client's timeout makes
the client give up), with extra `headers` (e.g. Retry-After).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from src.models.reward.implementations.openai_compatible import PREFLIGHT_TEXT


@dataclass
class Reply:
    content: str | None = '{"score": 7, "reasoning": "ok"}'
    status: int = 200
    message: str = "scripted error"
    refusal: str | None = None
    finish_reason: str = "stop"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    top_logprobs: dict[str, float] | None = None  # token -> logprob of the first generated token


def ok(content: str, **kw) -> Reply:
    return Reply(content=content, **kw)


def error(status: int, message: str = "scripted error", **kw) -> Reply:
    return Reply(content=None, status=status, message=message, **kw)


def user_text_and_images(body: dict) -> tuple[str, int]:
    """The text parts of a chat request's first user message, joined by spaces, and its number of images."""
    user = [m for m in body["messages"] if m["role"] == "user"][0]
    text = " ".join(p.get("text", "") for p in user["content"] if p.get("type") == "text")
    return text, sum(1 for p in user["content"] if p.get("type") == "image_url")


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any
    start: float
    end: float = 0.0

    def user_text(self) -> str:
        """The text parts of the first user message."""
        for message in self.body.get("messages", []):
            if message.get("role") == "user":
                content = message["content"]
                if isinstance(content, str):
                    return content
                return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
        return ""


class ScriptedOpenAIServer:
    def __init__(self, served_models: list[str] | None = None) -> None:
        self.served_models = ["test-judge"] if served_models is None else list(served_models)  # GET /v1/models
        self.api_key: str | None = None  # when set, requests need "Authorization: Bearer <api_key>" (else 401)
        self.requests: list[Received] = []  # chat requests, preflight checks left out
        self.checks: list[Received] = []  # GET requests and preflight chats (answered {"ok": true})
        self.preflight_reply: Reply | None = None  # answer preflight chats with this instead
        self.queue: deque[Reply] = deque()
        self.by_key: dict[str, list[Reply]] = {}
        self.handler: Callable[[dict], Reply] | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting
    def push(self, *replies: Reply) -> None:
        self.queue.extend(replies)

    def _next(self, received: Received) -> Reply:
        if self.handler is not None:
            return self.handler(received.body)
        with self._lock:
            if self.by_key:
                text = received.user_text()
                for key, replies in self.by_key.items():
                    if key in text:
                        return replies.pop(0) if len(replies) > 1 else replies[0]
                return error(500, f"no scripted reply for {text[:60]!r}")
            if not self.queue:
                return error(500, "script exhausted")
            return self.queue.popleft() if len(self.queue) > 1 else self.queue[0]

    # -- life cycle
    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self, port: int = 0) -> "ScriptedOpenAIServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _authorized(self) -> bool:
                if server.api_key is None or self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self._send(error(401, "invalid API key"), {})
                return False

            def do_GET(self) -> None:  # noqa: N802 - /health (vLLM) and /v1/models
                path = self.path.rstrip("/")
                with server._lock:
                    server.checks.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                  None, time.monotonic(), time.monotonic()))
                if path == "/health":
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/v1/models" and server.served_models is not None:
                    if self._authorized():
                        data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"}
                                for m in server.served_models]
                        self._send_json(200, {"object": "list", "data": data})
                else:
                    self._send(error(404, f"unknown path {self.path}"), {})

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                start = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, start)
                if PREFLIGHT_TEXT in received.user_text():  # the judge's connection check: no script consumed
                    with server._lock:
                        server.checks.append(received)
                    if self._authorized():
                        self._send(server.preflight_reply or ok('{"ok": true}'), body)
                    return
                with server._lock:
                    server.requests.append(received)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if not self._authorized():
                        return
                    if self.path.rstrip("/") != "/v1/chat/completions":
                        reply = error(404, f"unknown path {self.path}")
                    else:
                        reply = server._next(received)
                    if reply.delay:
                        time.sleep(reply.delay)
                    self._send(reply, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)
                finally:
                    received.end = time.monotonic()
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, reply: Reply, body: dict) -> None:
                logprobs = None
                if reply.top_logprobs is not None and body.get("logprobs"):
                    top = sorted(reply.top_logprobs.items(), key=lambda kv: -kv[1])[:body.get("top_logprobs") or 0]
                    first = top[0] if top else ("?", -1.0)
                    logprobs = {"content": [{"token": first[0], "logprob": first[1], "bytes": None,
                                             "top_logprobs": [{"token": t, "logprob": lp, "bytes": None}
                                                              for t, lp in top]}]}
                if reply.status == 200:
                    payload = {
                        "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                        "model": body.get("model", "?"),
                        "choices": [{"index": 0, "logprobs": logprobs, "finish_reason": reply.finish_reason,
                                     "message": {"role": "assistant", "content": reply.content,
                                                 "refusal": reply.refusal}}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
                    }
                else:
                    payload = {"error": {"message": reply.message, "type": "scripted", "code": reply.status}}
                self._send_json(reply.status, payload, reply.headers)

            def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # don't wait for a handler still sleeping in a timeout test
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
