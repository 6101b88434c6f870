"""A vLLM judge that the run starts and stops itself, inside the two-stage swap.

`load()` — which the pipeline calls after the editor has been released, so the GPU is free — starts

    vllm serve MODEL --host HOST --port PORT --served-model-name NAME --dtype DTYPE --seed SEED
        --tensor-parallel-size TP --gpu-memory-utilization U --limit-mm-per-prompt '{"image": N}'
        [--max-model-len L] [--max-logprobs K] [--mm-processor-kwargs '{"min_pixels": .., "max_pixels": ..}']
        [EXTRA_ARGS ...]

as a child process in its own process group, waits until `GET /health` answers 200 (or the process
exits, or `startup_timeout_s` passes: a ModelError with the last lines the server printed), then scores
exactly like OpenAICompatibleRewardModel (same requests, parsing, retries, concurrency, logits mode)
against `http://HOST:PORT/v1`, after the same preflight (listed model, one tiny request).
`release()` stops the server: SIGTERM to its process group, SIGKILL after `shutdown_timeout_s`.

No orphaned GPU process: the server is also stopped when the run ends by an error, Ctrl-C or SIGTERM
(an `atexit` hook and a finalizer), and on Linux the child gets PR_SET_PDEATHSIG, so it is killed even
when this process dies by SIGKILL. The server's output goes to the run's log (logs/run.log, debug level);
its last lines are kept for error messages.

The API key is a fresh random token per start, given to the server through the environment variable
VLLM_API_KEY (never on its command line, never written): other users of a shared node cannot use it.

`command` (default `["vllm", "serve"]`) is overridable: the tests start a fake OpenAI-compatible server
script with the same arguments. Not run against a real vLLM in this project's CI (no GPU): the argument
names follow `vllm serve --help` of current vLLM releases; check them with `python main.py smoke`.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from typing import Any

from src.models.base import ModelError
from src.models.reward.implementations.openai_compatible import OpenAICompatibleRewardModel

log = logging.getLogger(__name__)
server_log = logging.getLogger("ieb.judge_server")  # under the run's logger: lands in logs/run.log

def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except Exception:  # noqa: BLE001 - not Linux: the atexit hook and the finalizer still stop it
        pass


def _stop_process(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM the child's process group, wait, then SIGKILL. Safe to call twice."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


class VLLMServerRewardModel(OpenAICompatibleRewardModel):
    """Starts `vllm serve` for the judge after the editor is released, scores through it, stops it."""

    def __init__(
        self,
        model: str = "Qwen/Qwen3-VL-8B-Instruct",
        served_model_name: str | None = None,
        command: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = 32768,
        max_images_per_prompt: int = 2,
        min_pixels: int | None = None,
        max_pixels: int | None = 1280 * 28 * 28,
        extra_args: list[str] | None = None,
        startup_timeout_s: float = 1800.0,
        shutdown_timeout_s: float = 30.0,
        max_concurrency: int = 32,
        timeout_s: float = 300.0,
        max_retries: int = 2,
        protocol: str | dict = "category_0to10",
        num_pass: int = 1,
        transport_retries: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        temperature: float = 0.0,
        seed: int | None = 0,
        max_tokens: int = 1024,
        image_format: str = "png",
        extra_body: dict | None = None,
        response_format: str | None = "json_object",
        scoring: str = "generate",
        top_logprobs: int = 20,
        preflight: bool = True,
        batch_size: int = 32,
        dtype: str = "bfloat16",
        device: str = "auto",
        cache_dir: str | None = None,
    ) -> None:
        name = served_model_name or model
        super().__init__(model=name, base_url=f"http://{host}:{port or 0}/v1", api_key_env=None,
                         max_concurrency=max_concurrency, timeout_s=timeout_s, max_retries=max_retries,
                         protocol=protocol, num_pass=num_pass, transport_retries=transport_retries,
                         backoff_s=backoff_s, max_backoff_s=max_backoff_s, temperature=temperature, seed=seed,
                         max_tokens=max_tokens, image_format=image_format, extra_body=extra_body,
                         response_format=response_format, scoring=scoring, top_logprobs=top_logprobs,
                         preflight=preflight, batch_size=batch_size, model_name=model, device=device, dtype=dtype,
                         cache_dir=cache_dir)
        if not isinstance(model, str) or not model:
            raise ModelError("model must be the checkpoint to serve (a hub id or a local folder)")
        if command is not None and (not isinstance(command, list) or not command
                                    or not all(isinstance(c, str) and c for c in command)):
            raise ModelError(f"command must be a non-empty list of strings (e.g. [vllm, serve]), got {command!r}")
        if extra_args is not None and (not isinstance(extra_args, list)
                                       or not all(isinstance(a, str) for a in extra_args)):
            raise ModelError(f"extra_args must be a list of strings, got {extra_args!r}")
        for key, value, lo in (("port", port, 0), ("tensor_parallel_size", tensor_parallel_size, 1),
                               ("max_images_per_prompt", max_images_per_prompt, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo or (key == "port" and value > 65535):
                raise ModelError(f"{key} must be an integer >= {lo}" + (" (0 = a free port)" if key == "port" else "")
                                 + f", got {value!r}")
        for key, value in (("max_model_len", max_model_len), ("min_pixels", min_pixels), ("max_pixels", max_pixels)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ModelError(f"{key} must be a positive integer or null, got {value!r}")
        if min_pixels and max_pixels and min_pixels > max_pixels:
            raise ModelError(f"min_pixels ({min_pixels}) is larger than max_pixels ({max_pixels})")
        if isinstance(gpu_memory_utilization, bool) or not isinstance(gpu_memory_utilization, (int, float)) \
                or not 0 < gpu_memory_utilization <= 1:
            raise ModelError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization!r}")
        for key, value in (("startup_timeout_s", startup_timeout_s), ("shutdown_timeout_s", shutdown_timeout_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ModelError(f"{key} must be a positive number, got {value!r}")
        self.checkpoint = model
        self.served_model_name = name
        self.command = list(command) if command else ["vllm", "serve"]
        self.host = host
        self.port = port
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = float(gpu_memory_utilization)
        self.max_model_len = max_model_len
        self.max_images_per_prompt = max_images_per_prompt
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.extra_args = list(extra_args or [])
        self.startup_timeout_s = float(startup_timeout_s)
        self.shutdown_timeout_s = float(shutdown_timeout_s)
        self.vllm_dtype = dtype
        self._proc: subprocess.Popen | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._finalizer: weakref.finalize | None = None
        self._server_key: str | None = None  # this start's random key, in memory only

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.checkpoint!r}, command={self.command!r})"

    # ------------------------------------------------------------------ life cycle

    def check(self) -> None:
        """Configuration and the command (no server yet: it starts after the editor is released)."""
        self._check_config()
        if shutil.which(self.command[0]) is None and not os.path.isfile(self.command[0]):
            raise ModelError(f"judge command {self.command[0]!r} not found: install vLLM (pip install vllm) in this "
                             "environment, or set reward_model.init_args.command to the server command")

    def server_argv(self, port: int) -> list[str]:
        """The server's command line (no secret in it: the key goes through the environment)."""
        argv = [*self.command, self.checkpoint, "--host", self.host, "--port", str(port),
                "--served-model-name", self.served_model_name, "--dtype", self.vllm_dtype,
                "--tensor-parallel-size", str(self.tensor_parallel_size),
                "--gpu-memory-utilization", f"{self.gpu_memory_utilization:g}",
                "--limit-mm-per-prompt", json.dumps({"image": self.max_images_per_prompt})]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        if self.max_model_len:
            argv += ["--max-model-len", str(self.max_model_len)]
        if self.scoring == "logits":
            argv += ["--max-logprobs", str(self.top_logprobs)]
        pixels = {k: v for k, v in (("min_pixels", self.min_pixels), ("max_pixels", self.max_pixels)) if v}
        if pixels:
            argv += ["--mm-processor-kwargs", json.dumps(pixels)]
        return argv + self.extra_args

    def load(self) -> None:
        if self.loaded:
            return
        self.check()
        port = self.port or _free_port(self.host)
        key = secrets.token_urlsafe(24)
        argv = self.server_argv(port)
        env = {**os.environ, "VLLM_API_KEY": key}
        server_log.info("starting the judge server: %s", " ".join(argv))
        self._tail.clear()
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                      preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None)
        proc = self._proc
        self._finalizer = weakref.finalize(self, _stop_process, proc, self.shutdown_timeout_s)
        atexit.register(_stop_process, proc, self.shutdown_timeout_s)
        threading.Thread(target=self._pump, args=(proc,), name="judge-server-log", daemon=True).start()
        self._server_key = key
        self.base_url = f"http://{self.host}:{port}/v1"
        try:
            self._wait_ready(proc, port)
            self.device = "remote"
            self._load()  # the OpenAI client and the preflight
        except BaseException:
            self._stop()
            raise
        self.loaded = True
        self.on_gpu = False

    def release(self) -> None:
        super().release()
        self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        self._server_key = None
        if proc is not None:
            t0 = time.monotonic()
            _stop_process(proc, self.shutdown_timeout_s)
            atexit.unregister(_stop_process)
            if self._finalizer is not None:
                self._finalizer.detach()
            server_log.info("judge server stopped (exit code %s) in %.1f s", proc.returncode, time.monotonic() - t0)

    def _api_key(self) -> str:
        return self._server_key or super()._api_key()

    def _key_from_env(self) -> bool:
        return False

    @property
    def server_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ------------------------------------------------------------------ helpers

    def _pump(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self._tail.append(line)
            server_log.debug("judge server: %s", line)

    def _wait_ready(self, proc: subprocess.Popen, port: int) -> None:
        url = f"http://{self.host}:{port}/health"
        deadline = time.monotonic() + self.startup_timeout_s
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        while True:
            code = proc.poll()
            if code is not None:
                time.sleep(0.2)  # let the log pump read the last lines
                raise ModelError(f"the judge server exited with code {code} before it was ready; its last "
                                 f"lines:\n{self._last_lines()}")
            try:
                with opener.open(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ModelError(f"the judge server was not ready after {self.startup_timeout_s:g} s "
                                 f"(startup_timeout_s); its last lines:\n{self._last_lines()}")
            time.sleep(0.25)

    def _last_lines(self) -> str:
        return "\n".join(f"  | {line}" for line in list(self._tail)[-15:]) or "  | (nothing)"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


__all__ = ["VLLMServerRewardModel"]
