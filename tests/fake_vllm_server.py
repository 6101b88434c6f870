"""A stand-in for `vllm serve` in tests: the same command-line shape, an OpenAI-compatible server on
127.0.0.1 (tests/openai_server.py) with /health, /v1/models and deterministic chat replies.

    python tests/fake_vllm_server.py MODEL --host 127.0.0.1 --port P --served-model-name NAME [...]
        [--fake-mode ok|crash|never-ready|ignore-term]

Replies: `{"score": s, "reasoning": ...}` with s = (sum of the request's image data-URL bytes) mod 11,
so the same edit always gets the same score; with `logprobs`, the top log-probabilities of the digit
tokens (a fixed distribution). The key is the environment's VLLM_API_KEY, as with vLLM. When the
environment names FAKE_VLLM_STATE, the script writes {"pid", "argv", "key_on_command_line"} there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.openai_server import Reply, ScriptedOpenAIServer  # noqa: E402

DIGIT_PROBS = {"7": 0.5, "8": 0.25, "1": 0.125, "6": 0.0625, "0": 0.0625}  # after '{"score": '
AFTER_ONE = {"0": 0.75, ",": 0.25}  # after '{"score": 1'


def reply_for(body: dict) -> Reply:
    messages = body.get("messages", [])
    if body.get("logprobs"):
        prefix = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
        probs = AFTER_ONE if prefix.endswith("1") else DIGIT_PROBS
        return Reply(content="", top_logprobs={t: math.log(p) for t, p in probs.items()})
    urls = [part["image_url"]["url"] for m in messages if isinstance(m.get("content"), list)
            for part in m["content"] if part.get("type") == "image_url"]
    digest = hashlib.sha256("".join(urls).encode()).digest()
    score = sum(digest) % 11
    return Reply(content=json.dumps({"score": score, "reasoning": f"fake judge, {len(urls)} images"}))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name")
    p.add_argument("--fake-mode", default="ok", choices=("ok", "crash", "never-ready", "ignore-term"))
    args, _ = p.parse_known_args()
    assert args.host == "127.0.0.1", "the fake server listens on loopback only"
    if os.environ.get("FAKE_VLLM_STATE"):
        key = os.environ.get("VLLM_API_KEY") or ""
        Path(os.environ["FAKE_VLLM_STATE"]).write_text(json.dumps(
            {"pid": os.getpid(), "argv": sys.argv[1:], "key_on_command_line": bool(key) and key in " ".join(sys.argv)}))
    print(f"INFO fake vllm: loading {args.model}", flush=True)
    if args.fake_mode == "crash":
        print("ERROR fake vllm: CUDA out of memory while loading the weights", flush=True)
        return 1
    stop = threading.Event()
    if args.fake_mode == "ignore-term":
        signal.signal(signal.SIGTERM, lambda *_: print("INFO fake vllm: ignoring SIGTERM", flush=True))
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.fake_mode == "never-ready":
        while not stop.wait(0.1):
            pass
        return 0
    server = ScriptedOpenAIServer(served_models=[args.served_model_name or args.model])
    server.api_key = os.environ.get("VLLM_API_KEY") or None
    server.handler = reply_for
    server.start(port=args.port)
    print(f"INFO fake vllm: serving {args.served_model_name or args.model} on port {args.port}", flush=True)
    while not stop.wait(0.1):
        pass
    server.stop()
    print("INFO fake vllm: shut down", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
