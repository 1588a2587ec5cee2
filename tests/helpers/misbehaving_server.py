"""MisbehavingServer: a real OpenAI-style completions server on loopback (stdlib only)
that fails on purpose, for the openai-http engine's fault tests.

    python misbehaving_server.py --port PORT [--fail-on N]
                                 [--how 500|error-event|cut|done-early|exit|hang|stall]
                                 [--exit-at-start] [--api-key KEY] [--token-delay 0.002]
                                 [--worker]

It streams well-formed SSE completions (one chunk per token, then a finish_reason chunk
and ``[DONE]``), except for requests whose ``max_tokens`` equals ``--fail-on``: those fail
the way ``--how`` says (``stall``: a few tokens, then nothing, as a hung server). Every
failure is also written to stderr, as a real server logs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def log(msg: str) -> None:
    print(f"misbehaving-server: {msg}", file=sys.stderr, flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    args: argparse.Namespace

    def log_message(self, fmt, *a):  # keep the stdlib's access log on stderr, as servers do
        log(fmt % a)

    def _json(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        key = self.args.api_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            log("refused a request without the right API key")
            self._json(401, {"error": {"message": "invalid api key"}})
            return False
        return True

    def do_GET(self):
        if self.args.how == "hang":
            time.sleep(3600)
        if not self._authorised():
            return
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "misbehaving", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def _chunk(self, data: str) -> None:
        raw = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        self.wfile.flush()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self._authorised():
            return
        if not isinstance(body.get("prompt"), str):
            self._json(422, {"error": {"message": "prompt must be a string"}})
            return
        n = int(body.get("max_tokens", 16))
        failing = n == self.args.fail_on
        if failing and self.args.how == "500":
            log(f"answering 500 on purpose (max_tokens={n})")
            self._json(500, {"error": {"message": "internal error on purpose"}})
            return
        if failing and self.args.how == "exit":
            log(f"exiting on purpose in the middle of a request (max_tokens={n})")
            os._exit(7)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(n):
            if failing and i == 2:
                if self.args.how == "error-event":
                    log("sending an error event mid-stream on purpose")
                    self._chunk(json.dumps({"error": {"message": "KV cache exhausted on purpose"}}))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if self.args.how == "cut":
                    log("cutting the stream on purpose")
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    self.close_connection = True
                    return
                if self.args.how == "stall":
                    log("stalling mid-stream on purpose")
                    time.sleep(3600)
                if self.args.how == "done-early":
                    log("ending the stream early on purpose")
                    self._chunk("[DONE]")
                    self.wfile.write(b"0\r\n\r\n")
                    return
            time.sleep(self.args.token_delay)
            self._chunk(
                json.dumps({"choices": [{"index": 0, "text": f" w{i}", "finish_reason": None}]})
            )
        self._chunk(
            json.dumps(
                {
                    "choices": [{"index": 0, "text": "", "finish_reason": "length"}],
                    "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": n},
                }
            )
        )
        self._chunk("[DONE]")
        self.wfile.write(b"0\r\n\r\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a batch of 128 connects at once (the stdlib default is 5)

    def handle_error(self, request, client_address):
        # a client that hung up (the engine cancels the rest of a failed round): one line,
        # not the stdlib's traceback, as production servers log it
        log(f"client {client_address[0]}:{client_address[1]} went away: {sys.exc_info()[1]!r}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fail-on", type=int, default=-1)
    p.add_argument(
        "--how",
        default="500",
        choices=["500", "error-event", "cut", "done-early", "exit", "hang", "stall"],
    )
    p.add_argument("--exit-at-start", action="store_true")
    p.add_argument("--api-key", default="")
    p.add_argument("--token-delay", type=float, default=0.002)
    p.add_argument("--tag", default="", help="ignored: lets a test find this process")
    p.add_argument("--worker", action="store_true", help="a child that outlives this process")
    args = p.parse_args()
    if args.worker:  # as vllm serve's engine core: a child in the server's process group
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        log(f"worker pid {worker.pid}")
    if args.exit_at_start:
        log("cannot load model: no such file (exiting at start on purpose)")
        sys.exit(3)
    Handler.args = args
    server = Server(("127.0.0.1", args.port), Handler)
    log(f"listening on 127.0.0.1:{args.port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
