"""Any OpenAI-compatible completions server, measured from the client over streaming HTTP.

Works with llama.cpp's llama-server, llama_cpp.server, ``vllm serve``, TGI and
trtllm-serve. Each request is one streamed ``POST /v1/completions``; a chunk's arrival
time is its token's time, so TTFT and inter-token latencies are what a client sees.
Admission follows the shared Scheduler exactly like the in-process engines (the kit's
``run_tasks``): at most B requests in flight, refilled at once (continuous) or in waves
(static); arrival offsets come from the workload, so a workload can load a server at a
chosen rate.

Knobs: ``engines.config.OpenAIHTTPKnobs``. The server is either running (``url``), or
started here on 127.0.0.1: ``command = [...]`` with placeholders ``{port}``, ``{host}``,
``{model}`` (the resolved model file; a synthetic model as GGUF, or as a Hugging Face
directory with ``model_format = "hf"``), ``{python}`` (this interpreter) and ``{threads}``
(the usable cores less one, or the ``n_threads`` knob: the client keeps a core), or
``server = "llama_cpp.server"``. A text prompt (``prompt_format``) spells each token id as
one ASCII character, so a byte-level tokenizer such as the synthetic models' sees about
one token per character. The API key is read from ``api_key_env`` at request time and
never stored in describe() or reports.
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

from ..device import compute_threads
from ..workload.spec import Request, Workload
from ..workload.strategies import Strategy
from .base import FEATURES, Engine, EngineCrashed, EngineError, EngineSpec, EngineUnavailable
from .config import OpenAIHTTPKnobs
from .kit import Round, probe_workload, run_tasks
from .process import ChildProcess, PortInUse, free_port, port_taken

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise EngineUnavailable(
        "engine 'openai-http' needs httpx: pip install 'pytest-batchperf[openai-http]'"
    ) from exc

_ALPHABET = string.ascii_letters + string.digits
_SECRET_FLAG = re.compile(r"(?i)^--?(api[-_]?key|token|password)")
HOST = "127.0.0.1"


class RequestFailed(Exception):
    """One request failed; the message is one line for the user."""


class RequestTimedOut(RequestFailed):
    """No data within request_timeout_s: a server we started is presumed hung."""


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
    return url.rstrip("/").removesuffix("/v1")


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


def _llama_server() -> str:
    """llama.cpp's own server: on PATH, else where ``batchperf build-llama-cpp`` put it."""
    from .llama_build import find_binary

    found = find_binary("llama-server")
    if found is None:
        raise EngineUnavailable(
            "llama-server is neither on PATH nor built: run "
            "`batchperf build-llama-cpp` (or put llama.cpp's llama-server "
            "on PATH)"
        )
    return str(found)


def _version(binary: str) -> str:
    """What ``binary --version`` says, and the source it was built from where we built it."""
    import subprocess

    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        line = next((x for x in (out.stdout + out.stderr).splitlines() if "version" in x), "")
    except (OSError, subprocess.TimeoutExpired):
        line = ""
    built = Path(binary).parent.parent.name  # llama.cpp-<llama-cpp-python version>
    return f"{line.strip()} ({built})" if built.startswith("llama.cpp-") else line.strip()


class OpenAIHTTPEngine(Engine):
    name = "openai-http"

    def __init__(self, spec: EngineSpec):
        super().__init__(spec)
        k: OpenAIHTTPKnobs = self.knobs
        self.prompt_format = k.prompt_format
        self.api_key_env = k.api_key_env or "OPENAI_API_KEY"
        if k.api_key_env and not os.environ.get(k.api_key_env):
            raise EngineError(
                f"profile {spec.profile!r}: api_key_env names ${k.api_key_env}, which is not set"
            )
        self._vocab = self._vocab_size()
        self.server: ChildProcess | None = None
        self.served_model: str | None = None
        self.server_version = ""
        if k.url is not None:
            self.root = _root(k.url)
            self.server_label = "external"
        else:
            port = k.port or free_port(HOST)
            if k.port and port_taken(HOST, port):
                raise PortInUse(
                    f"port {port} on {HOST} is already in use: another server "
                    "would answer in this one's place; free it or leave port unset"
                )
            self.root = f"http://{HOST}:{port}"
            self.server_template, self.server_label = self._server_template()
            if self.server_label == "llama_cpp.server" and self.prompt_format == "auto":
                self.prompt_format = "text"  # its prompt is str | list[str]
            self.server = ChildProcess(self._server_argv(HOST, port), dict(os.environ))
        self._loop = asyncio.new_event_loop()
        self._client: Any = self._loop.run_until_complete(self._make_client())
        try:
            self._start_server()
            self.served_model = k.served_model or self._first_model()
        except BaseException:
            self.close()
            raise

    # -- set-up ------------------------------------------------------------------------

    def _vocab_size(self) -> int:
        if self.knobs.vocab_size is not None:
            return self.knobs.vocab_size
        if self.spec.model.shape is not None:
            return self.spec.model.shape.vocab
        if self.prompt_format == "tokens":
            raise EngineError(
                f"profile {self.spec.profile!r}: token prompts for model "
                f"{self.spec.model.name!r} need the vocab_size knob"
            )
        return 32000  # text prompts: the ids only choose characters

    @property
    def server_threads(self) -> int:
        """A server's compute threads on this host, beside our client (llama_cpp.server's,
        ``{threads}`` in a command)."""
        return self.knobs.n_threads or compute_threads()

    def _server_template(self) -> tuple[list[str], str]:
        """The server's argv with {port}, {host}, {model}, {python} placeholders, and a label.

        describe() shows the template: the port changes every session, and the model path
        every machine, and neither should show up as an environment change."""
        k = self.knobs
        if k.command is not None:
            cmd = k.command
            return (shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]), "command"
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError:
            raise EngineUnavailable(
                "server llama_cpp.server needs llama-cpp-python's server "
                "extra: pip install 'pytest-batchperf[server]'"
            ) from None
        argv = [
            "{python}",
            "-m",
            "llama_cpp.server",
            "--model",
            "{model}",
            "--model_alias",
            self.spec.model.name,
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--n_threads",
            str(self.server_threads),
            "--n_threads_batch",
            str(self.server_threads),
            "--n_ctx",
            str(k.n_ctx),
            "--n_batch",
            str(k.n_batch),
            "--n_gpu_layers",
            str(k.n_gpu_layers),
            # By default it ends the running stream as soon as another request waits:
            # under load that would cut every response short.
            "--interrupt_requests",
            "false",
        ]
        return argv + [str(a) for a in k.server_args], "llama_cpp.server"

    def _server_argv(self, host: str, port: int) -> list[str]:
        values = {
            "port": port,
            "host": host,
            "python": sys.executable,
            "model": self.spec.model.target,
            "llama_server": "{llama_server}",
            "threads": self.server_threads,
        }
        if any("{llama_server}" in a for a in self.server_template):
            server = _llama_server()
            values["llama_server"] = server
            self.server_version = _version(server)
        try:
            return [a.format(**values) for a in self.server_template]
        except (KeyError, IndexError, ValueError) as exc:
            raise EngineError(
                f"profile {self.spec.profile!r}: bad placeholder in the server "
                f"command: {exc}; use {{port}}, {{host}}, {{model}}, {{python}}, "
                "{threads} or {llama_server}"
            ) from None

    async def _make_client(self) -> httpx.AsyncClient:
        timeout = httpx.Timeout(self.knobs.request_timeout_s, connect=10.0)
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
        timeout = self.knobs.startup_timeout_s
        if self.server is None:
            deadline = time.monotonic() + min(timeout, 30.0)
            while not self._probe():
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"server at {_redact_url(self.root)} does not answer "
                        "GET /v1/models with 200"
                    )
                time.sleep(0.2)
            return
        self.server.start()
        try:
            self.server.wait_ready(self._probe, timeout)
        except EngineError as exc:
            if re.search(r"(?i)address already in use|bind.*failed|couldn't bind", str(exc)):
                raise PortInUse(f"{exc}\nthe server's port is already in use") from None
            raise

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
        return bool(getattr(self.knobs, feature, False)) if feature in FEATURES else False

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "engine": self.name,
            "server": self.server_label,
            "url": _redact_url(self.root) if self.server is None else "loopback",
            "model": self.spec.model.name,
            "model_hash": self.spec.model.hash,
            "served_model": self.served_model,
            "prompt_format": self.prompt_format,
            "httpx": httpx.__version__,
        }
        if self.server is not None:
            d["server_command"] = " ".join(_redact_argv(self.server_template))
        if self.server_version:
            d["server_version"] = self.server_version
        if self.server_label == "llama_cpp.server":
            import llama_cpp

            d["llama_cpp_python"] = llama_cpp.__version__
        if self.server_label == "llama_cpp.server" or any(
            "{threads}" in a for a in self.server_template
        ):
            d["compute_threads"] = self.server_threads
        return d

    def warmup(self) -> None:
        """One short request; under prompt_format=auto it also finds what the server takes."""
        if self.prompt_format == "auto":
            self.prompt_format = "tokens"
            try:
                self.run_round(probe_workload(), Strategy.SEQUENTIAL, 1)
                return
            except EngineError as exc:
                # llama_cpp.server answers a validation error with 500 that names 'prompt'
                if not re.search(r"HTTP (400|415|422)|HTTP 5\d\d.*prompt", str(exc)):
                    raise
            self.prompt_format = "text"
        self.run_round(probe_workload(), Strategy.SEQUENTIAL, 1)

    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int):
        if self.server is not None and not self.server.alive():
            # it died in an earlier case: that case errored; start afresh for this one
            self.server.stop()
            self._start_server()
        rnd = Round(workload, strategy, batch_size)
        n = len(workload.requests)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        try:
            self._loop.run_until_complete(run_tasks(rnd, lambda r: self._send(rnd, r, n)))
        except RequestFailed as exc:
            server = self.server
            hung = server is not None and isinstance(exc, RequestTimedOut) and server.alive()
            note = "; the server was stopped, the next case starts afresh" if hung else ""
            error = self._failure(f"{exc}{note}")
            # Now, not at the next case: a hung server would fail every later case, and a
            # dead one's workers (vllm serve's engine core) still hold the GPU.
            if server is not None and (hung or not server.alive()):
                server.stop(grace_s=0)
            raise error from None
        # This process is the client (the server is another): near one core, the client
        # and not the server may set the pace.
        cpu_pct = 100 * (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
        return rnd.trace({"client_cpu_pct": cpu_pct})

    # -- one request -------------------------------------------------------------------

    def _failure(self, what: str) -> EngineError:
        if self.server is None:
            return EngineError(what)
        self.server.settle(0.5)
        cls = EngineCrashed if not self.server.alive() else EngineError
        return cls(self.server.explain(what))

    def _body(self, r: Request) -> dict[str, Any]:
        k = self.knobs
        body: dict[str, Any] = {
            "prompt": list(r.prompt_tokens)
            if self.prompt_format == "tokens"
            else prompt_text(r.prompt_tokens),
            "max_tokens": r.max_output_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.served_model:
            body["model"] = self.served_model
        if k.ignore_eos:
            body["ignore_eos"] = True
        if k.min_tokens:
            body["min_tokens"] = r.max_output_tokens
        if k.priority:
            body["priority"] = r.priority
        body.update(k.extra_body)
        return body

    async def _send(self, rnd: Round, r: Request, n: int) -> None:
        try:
            got = await self._stream(r)
        except RequestFailed as exc:
            raise RequestFailed(f"request {r.id} of {n} failed: {exc}") from None
        except httpx.TimeoutException:
            raise RequestTimedOut(
                f"request {r.id} of {n} failed: no data for "
                f"{self.knobs.request_timeout_s:g}s (request_timeout_s)"
            ) from None
        except httpx.ConnectError as exc:
            raise RequestFailed(
                f"request {r.id} of {n} failed: cannot connect to {_redact_url(self.root)}: {exc}"
            ) from None
        except httpx.HTTPError as exc:
            raise RequestFailed(
                f"request {r.id} of {n} failed: {type(exc).__name__}: {exc}"
            ) from None
        times = got.times
        if got.usage_completion is not None and got.usage_completion > len(times) and times:
            # The server counted more tokens than chunks: several arrived in one chunk
            # (a held-back multi-byte character); they reached the client at that time.
            times = times + [times[-1]] * (got.usage_completion - len(times))
        # A server may stream one token past max_tokens when a token decodes to no text;
        # the client asked for max_tokens, so only those count.
        trace = rnd.traces[r.id]
        trace.token_times = times[: r.max_output_tokens]
        if got.usage_prompt:
            trace.prompt_tokens = got.usage_prompt

    async def _stream(self, r: Request) -> _Stream:
        got = _Stream(times=[])
        done = False
        async with self._client.stream(
            "POST", "/v1/completions", json=self._body(r), headers=self._headers()
        ) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace").strip().replace("\n", " ")
                raise RequestFailed(f"HTTP {resp.status_code} from the server: {text[:300]}")
            async for line in resp.aiter_lines():
                t = time.perf_counter()
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
                    raise RequestFailed(
                        f"the server sent an error mid-stream after "
                        f"{len(got.times)} tokens: {str(msg)[:300]}"
                    )
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
            raise RequestFailed(
                f"the stream was cut short {how} after {len(got.times)} of "
                f"{r.max_output_tokens} tokens, with no finish_reason"
            )
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
