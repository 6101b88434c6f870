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


@dataclass
class Reply:
    content: str | None = '{"score": 7, "reasoning": "ok"}'
    status: int = 200
    message: str = "scripted error"
    refusal: str | None = None
    finish_reason: str = "stop"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def ok(content: str, **kw) -> Reply:
    return Reply(content=content, **kw)


def error(status: int, message: str = "scripted error", **kw) -> Reply:
    return Reply(content=None, status=status, message=message, **kw)


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
    def __init__(self) -> None:
        self.requests: list[Received] = []
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

    def start(self) -> "ScriptedOpenAIServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                start = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, start)
                with server._lock:
                    server.requests.append(received)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
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
                if reply.status == 200:
                    payload = {
                        "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                        "model": body.get("model", "?"),
                        "choices": [{"index": 0, "logprobs": None, "finish_reason": reply.finish_reason,
                                     "message": {"role": "assistant", "content": reply.content,
                                                 "refusal": reply.refusal}}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
                    }
                else:
                    payload = {"error": {"message": reply.message, "type": "scripted", "code": reply.status}}
                data = json.dumps(payload).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
