"""Any OpenAI-compatible completions server, measured from the client over streaming HTTP.

Works with llama_cpp.server, llama-server, ``vllm serve``, TGI and trtllm-serve. Each
request is one streamed ``POST /v1/completions``; a chunk's arrival time is its token's
time, so TTFT and inter-token latencies are what a client sees. Admission follows the
shared Scheduler exactly like the in-process engines: at most B requests in flight,
refilled at once (continuous) or in waves (static); arrival offsets come from the
workload (Poisson / gamma), so the same workload can load a server at a chosen rate.

Profile knobs:
- ``url``: a running server (``http://host:port`` or ``.../v1``); or
- ``server = "llama_cpp.server"``: start llama-cpp-python's server on the profile's model
  (synthetic GGUF or path) on 127.0.0.1 and a free port (knobs n_threads, n_ctx, n_batch,
  n_gpu_layers, server_args = [...]); or
- ``command = [...]``: start any server; placeholders ``{port}``, ``{host}``, ``{model}``
  (the model path; synthetic models as GGUF, or as an HF directory with
  ``model_format = "hf"``) and ``{python}`` (this interpreter).
- ``startup_timeout_s`` (120), ``request_timeout_s`` (300): readiness and per-chunk limits.
- ``prompt_format``: ``tokens`` (token-id lists: vLLM, llama-server), ``text``, or ``auto``
  (tokens if the server takes them, else text; llama_cpp.server only takes text). A text
  prompt spells each token id as one ASCII character, so a byte-level tokenizer such as
  the synthetic models' sees about one token per character; real tokenizers vary, and the
  server's reported usage is recorded where it gives one.
- ``ignore_eos``, ``min_tokens`` (both true): ask the server to generate exactly
  ``max_tokens``; set false for servers that reject unknown fields.
- ``api_key_env`` ("OPENAI_API_KEY"): environment variable holding the bearer token. The
  key is read at request time and never stored in the profile, describe() or reports.
- ``served_model``: the request's ``model`` field (default: the first of /v1/models).
- ``priority`` (false): send each request's priority (``vllm serve --scheduling-policy
  priority``); ``prefix_cache`` (false): the server caches shared prefixes.
- ``vocab_size``: token-id range for non-synthetic models; ``extra_body``: merged into
  every request body.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..models.shapes import shape as shape_named
from ..profiles import Profile
from ..strategies import Scheduler, Strategy
from ..workload import Request, Workload
from .base import (
    Engine,
    EngineCrashed,
    EngineError,
    EngineUnavailable,
    RequestTrace,
    RoundTrace,
    now,
)
from .server_process import ServerProcess, free_port

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise EngineUnavailable(
        "engine 'openai-http' needs httpx: pip install 'pytest-batchperf[openai-http]'") from exc

_ALPHABET = string.ascii_letters + string.digits
_SECRET_FLAG = re.compile(r"(?i)^--?(api[-_]?key|token|password)")


class RequestFailed(Exception):
    """One request failed; the message is one line for the user."""


@dataclass
class _Stream:
    """What one streamed response delivered."""

    times: list[float]
    usage_completion: int | None = None
    usage_prompt: int | None = None
    finish_reason: str | None = None


def prompt_text(tokens: tuple[int, ...]) -> str:
    """One ASCII character per token id: shared token prefixes stay shared text prefixes."""
    return "".join(_ALPHABET[t % len(_ALPHABET)] for t in tokens)


def _root(url: str) -> str:
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _redact_argv(argv: list[str]) -> list[str]:
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
            continue
        m = _SECRET_FLAG.match(arg)
        if m and "=" in arg:
            out.append(arg.split("=", 1)[0] + "=***")
        else:
            out.append(arg)
            hide = bool(m)
    return out


class OpenAIHTTPEngine(Engine):
    name = "openai-http"

    def __init__(self, profile: Profile):
        o = dict(profile.options)
        self.profile = profile
        self.device = profile.device
        self.options = o
        self.startup_timeout_s = float(o.get("startup_timeout_s", 120))
        self.request_timeout_s = float(o.get("request_timeout_s", 300))
        self.prompt_format = str(o.get("prompt_format", "auto"))
        if self.prompt_format not in ("auto", "tokens", "text"):
            raise EngineError(f"profile {profile.name!r}: prompt_format must be auto, tokens or "
                              f"text, got {self.prompt_format!r}")
        self.api_key_env = str(o.get("api_key_env", "OPENAI_API_KEY"))
        if "api_key_env" in o and not os.environ.get(self.api_key_env):
            raise EngineError(f"profile {profile.name!r}: api_key_env names "
                              f"${self.api_key_env}, which is not set")
        self.model_path, self.model_hash = self._model_file()
        self._vocab = self._vocab_size()
        self.server: ServerProcess | None = None
        if "url" in o:
            self.root = _root(str(o["url"]))
            self.server_label = "external"
        else:
            host = "127.0.0.1"
            port = free_port(host)
            self.root = f"http://{host}:{port}"
            self.server_template, self.server_label = self._server_template()
            argv = self._server_argv(host, port)
            if self.server_label == "llama_cpp.server" and self.prompt_format == "auto":
                self.prompt_format = "text"  # its prompt is str | list[str]
            self.server = ServerProcess(argv)
        self._loop = asyncio.new_event_loop()
        self._client = self._loop.run_until_complete(self._make_client())
        try:
            self._start_server()
            self.served_model = o.get("served_model") or self._first_model()
        except BaseException:
            self.close()
            raise

    # -- set-up ------------------------------------------------------------------------

    def _model_file(self) -> tuple[Path | None, str]:
        model = self.profile.model
        if "url" in self.options:
            return None, model  # the running server's business
        if model.startswith("synthetic:"):
            s = shape_named(model.split(":", 1)[1])
            if self.options.get("model_format", "gguf") == "hf":
                from ..models.hf_model import hf_model_dir

                return hf_model_dir(s), f"synthetic-{s.name}-hf"
            from ..models.gguf_model import WRITER_VERSION, gguf_path

            return gguf_path(s), f"synthetic-{s.name}-{s.key(WRITER_VERSION)}"
        path = Path(model).expanduser()
        if not path.exists():
            raise EngineError(f"model file not found: {path}")
        return path, path.name

    def _vocab_size(self) -> int:
        if "vocab_size" in self.options:
            return int(self.options["vocab_size"])
        if self.profile.model.startswith("synthetic:"):
            return shape_named(self.profile.model.split(":", 1)[1]).vocab
        if self.prompt_format == "tokens":
            raise EngineError(f"profile {self.profile.name!r}: token prompts for model "
                              f"{self.profile.model!r} need the vocab_size knob")
        return 32000  # text prompts: the ids only choose characters

    def _server_template(self) -> tuple[list[str], str]:
        """The server's argv with {port}, {host}, {model}, {python} placeholders, and a label.

        describe() shows the template: the port changes every session, and the model path
        every machine, and neither should show up as an environment change."""
        o = self.options
        if "command" in o:
            cmd = o["command"]
            return (shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]), "command"
        if o.get("server") != "llama_cpp.server":
            raise EngineError(f"profile {self.profile.name!r}: the openai-http engine needs "
                              "url, command = [...] or server = \"llama_cpp.server\"")
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError:
            raise EngineUnavailable("server llama_cpp.server needs llama-cpp-python's server "
                                    "extra: pip install 'pytest-batchperf[server]'") from None
        n_threads = str(o.get("n_threads", 2))
        argv = ["{python}", "-m", "llama_cpp.server", "--model", "{model}",
                "--model_alias", self.profile.model, "--host", "{host}", "--port", "{port}",
                "--n_threads", n_threads, "--n_threads_batch", n_threads,
                "--n_ctx", str(o.get("n_ctx", 4096)), "--n_batch", str(o.get("n_batch", 512)),
                "--n_gpu_layers", str(o.get("n_gpu_layers", 0)),
                # By default it ends the running stream as soon as another request waits:
                # under load that would cut every response short.
                "--interrupt_requests", "false"]
        return argv + [str(a) for a in o.get("server_args", ())], "llama_cpp.server"

    def _server_argv(self, host: str, port: int) -> list[str]:
        values = {"port": port, "host": host, "python": sys.executable,
                  "model": self.model_path or self.profile.model}
        try:
            return [a.format(**values) for a in self.server_template]
        except (KeyError, IndexError, ValueError) as exc:
            raise EngineError(f"profile {self.profile.name!r}: bad placeholder in the server "
                              f"command: {exc}; use {{port}}, {{host}}, {{model}} or "
                              "{python}") from None

    async def _make_client(self) -> httpx.AsyncClient:
        timeout = httpx.Timeout(self.request_timeout_s, connect=10.0)
        # No pool limit: the Scheduler bounds concurrency, the pool must not add a queue.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        return httpx.AsyncClient(base_url=self.root, timeout=timeout, limits=limits)

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _probe(self) -> bool:
        try:
            r = httpx.get(f"{self.root}/v1/models", headers=self._headers(), timeout=2.0)
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def _start_server(self) -> None:
        if self.server is None:
            deadline = time.monotonic() + min(self.startup_timeout_s, 30.0)
            while not self._probe():
                if time.monotonic() > deadline:
                    raise EngineError(f"server at {_redact_url(self.root)} does not answer "
                                      "GET /v1/models with 200")
                time.sleep(0.2)
            return
        self.server.start()
        self.server.wait_ready(self._probe, self.startup_timeout_s)

    def _first_model(self) -> str | None:
        try:
            r = httpx.get(f"{self.root}/v1/models", headers=self._headers(), timeout=10.0)
            return r.json()["data"][0]["id"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            return None

    # -- the contract ------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab

    # pids() stays the base one: a server started here is a child of this process, and
    # memory sampling counts children (an external server's memory is not ours to see).

    def supports(self, feature: str) -> bool:
        return bool(self.options.get(feature, False)) if feature in ("priority", "prefix_cache") else False

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "engine": self.name,
            "server": self.server_label,
            "url": _redact_url(self.root) if self.server is None else "loopback",
            "model": self.profile.model,
            "model_hash": self.model_hash,
            "served_model": self.served_model,
            "prompt_format": self.prompt_format,
            "httpx": httpx.__version__,
        }
        if self.server is not None:
            d["server_command"] = " ".join(_redact_argv(self.server_template))
        if self.server_label == "llama_cpp.server":
            import llama_cpp

            d["llama_cpp_python"] = llama_cpp.__version__
        return d

    def warmup(self) -> None:
        """One short request; under prompt_format=auto it also finds what the server takes."""
        probe = Request(0, tuple(range(4, 12)), 2)
        wl = Workload(spec=None, requests=(probe,))  # type: ignore[arg-type]
        if self.prompt_format == "auto":
            self.prompt_format = "tokens"
            try:
                self.run_round(wl, Strategy.SEQUENTIAL, 1)
                return
            except EngineError as exc:
                # llama_cpp.server answers a validation error with 500 that names 'prompt'
                if not re.search(r"HTTP (400|415|422)|HTTP 5\d\d.*prompt", str(exc)):
                    raise
            self.prompt_format = "text"
        self.run_round(wl, Strategy.SEQUENTIAL, 1)

    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int) -> RoundTrace:
        if self.server is not None and not self.server.alive():
            # it died in an earlier case: that case errored; start afresh for this one
            self.server.restart()
            self.server.wait_ready(self._probe, self.startup_timeout_s)
        return self._loop.run_until_complete(self._round(workload, strategy, batch_size))

    # -- one round ---------------------------------------------------------------------

    async def _round(self, workload: Workload, strategy: Strategy, batch_size: int) -> RoundTrace:
        sched = Scheduler(workload.requests, strategy, batch_size)
        t0 = now()
        traces = {r.id: RequestTrace(r.id, r.prompt_len, t0 + r.arrival_s, priority=r.priority)
                  for r in workload.requests}
        running: dict[asyncio.Task, Request] = {}
        try:
            while not sched.done or running:
                t = now()
                for r in sched.admit(t - t0, len(running)):
                    traces[r.id].scheduled = t
                    running[asyncio.create_task(self._send(r, traces[r.id]))] = r
                wake = sched.next_wakeup(now() - t0)
                # Nothing new can be admitted before `wake` unless a request finishes.
                timeout = None if wake is None else wake - (now() - t0)
                if running:
                    if timeout is not None and timeout <= 0:
                        timeout = None  # blocked by what is in flight: wait for a finish
                    done, _ = await asyncio.wait(running, timeout=timeout,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        r = running.pop(task)
                        exc = task.exception()
                        if exc is not None:
                            traces[r.id].error = str(exc)
                            raise self._failure(r, exc, len(workload.requests))
                elif timeout is not None:
                    await asyncio.sleep(max(timeout, 0.0005))
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        return RoundTrace(start=t0, end=now(), requests=list(traces.values()), waves=sched.waves)

    def _failure(self, r: Request, exc: BaseException, n: int) -> EngineError:
        what = f"request {r.id} of {n} failed: {exc}"
        if not isinstance(exc, RequestFailed):
            what = f"request {r.id} of {n} failed: {type(exc).__name__}: {exc}"
        if self.server is None:
            return EngineError(what)
        self.server.settle(0.5)
        cls = EngineCrashed if not self.server.alive() else EngineError
        return cls(self.server.explain(what))

    def _body(self, r: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": list(r.prompt_tokens) if self.prompt_format == "tokens"
            else prompt_text(r.prompt_tokens),
            "max_tokens": r.max_output_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.served_model:
            body["model"] = self.served_model
        if self.options.get("ignore_eos", True):
            body["ignore_eos"] = True
        if self.options.get("min_tokens", True):
            body["min_tokens"] = r.max_output_tokens
        if self.options.get("priority"):
            body["priority"] = r.priority
        body.update(self.options.get("extra_body", {}))
        return body

    async def _send(self, r: Request, trace: RequestTrace) -> None:
        try:
            got = await self._stream(r)
        except httpx.TimeoutException:
            raise RequestFailed(f"no data for {self.request_timeout_s:g}s "
                                "(request_timeout_s)") from None
        except httpx.ConnectError as exc:
            raise RequestFailed(f"cannot connect to {_redact_url(self.root)}: {exc}") from None
        except httpx.HTTPError as exc:
            raise RequestFailed(f"{type(exc).__name__}: {exc}") from None
        times = got.times
        if got.usage_completion is not None and got.usage_completion > len(times) and times:
            # The server counted more tokens than chunks: several arrived in one chunk
            # (a held-back multi-byte character); they reached the client at that time.
            times = times + [times[-1]] * (got.usage_completion - len(times))
        # llama-cpp-python 0.3.36 streams one token past max_tokens when a token decodes
        # to no text; the client asked for max_tokens, so only those count.
        trace.token_times = times[: r.max_output_tokens]
        trace.finished = trace.token_times[-1] if times else now()
        if got.usage_prompt:
            trace.prompt_tokens = got.usage_prompt

    async def _stream(self, r: Request) -> _Stream:
        got = _Stream(times=[])
        done = False
        async with self._client.stream("POST", "/v1/completions", json=self._body(r),
                                       headers=self._headers()) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace").strip().replace("\n", " ")
                raise RequestFailed(f"HTTP {resp.status_code} from the server: {text[:300]}")
            async for line in resp.aiter_lines():
                t = now()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise RequestFailed(f"malformed stream chunk: {data[:200]}") from None
                if "error" in chunk:
                    err = chunk["error"]
                    msg = err.get("message", err) if isinstance(err, dict) else err
                    raise RequestFailed(f"the server sent an error mid-stream after "
                                        f"{len(got.times)} tokens: {str(msg)[:300]}")
                for choice in chunk.get("choices") or ():
                    finish = choice.get("finish_reason")
                    if finish is None or choice.get("text"):
                        got.times.append(t)
                    if finish is not None:
                        got.finish_reason = finish
                usage = chunk.get("usage")
                if usage:
                    got.usage_completion = usage.get("completion_tokens")
                    got.usage_prompt = usage.get("prompt_tokens")
        if got.finish_reason is None:
            how = "with [DONE]" if done else "(connection closed)"
            raise RequestFailed(f"the stream was cut short {how} after {len(got.times)} of "
                                f"{r.max_output_tokens} tokens, with no finish_reason")
        return got

    def close(self) -> None:
        client, self._client = getattr(self, "_client", None), None
        loop = getattr(self, "_loop", None)
        if client is not None and loop is not None and not loop.is_closed():
            loop.run_until_complete(client.aclose())
        if loop is not None and not loop.is_closed():
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        if self.server is not None:
            self.server.stop()
            self.server.remove_log()
