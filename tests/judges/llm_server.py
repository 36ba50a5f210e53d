"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for the remote-judge tests.

A real HTTP server (http.server, one thread per request), not a mock. With `llm` (the
bundled SmolLM2, curation.judges.llm.LocalLLM) it answers with the greedy first token and
its top logprobs; without, it answers like a judge that prefers the longer response (or
always "A", `bias="first"`), deterministic and instant. `script` makes it misbehave on
purpose, one entry per request, in order:

  "429"       rate limited (Retry-After: 0)      "500"      a server error
  "slow"      answers after `slow_s` seconds     "garbage"  "I think the first one is better"
  "notjson"   an HTML page with status 200       "nologprobs" a letter without logprobs
  "echo_key"  400 with the request's Authorization header in the body (a leaky server)
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_BLOCK = re.compile(r"<response_([AB])>\n(.*?)\n</response_\1>", re.DOTALL)


class LLMServer:
    def __init__(self, llm=None, *, api_key: str = "", bias: str = "longer", slow_s: float = 2.0):
        self.llm = llm
        self.api_key = api_key
        self.bias = bias
        self.slow_s = slow_s
        self.script: list[str] = []
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> LLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next_mode(self) -> str:
        with self._lock:
            return self.script.pop(0) if self.script else "ok"

    def _answer(self, messages: list[dict]) -> tuple[str, list[tuple[str, float]]]:
        if self.llm is not None:
            with self._lock:  # one forward pass at a time on the shared model
                top = self.llm.top_tokens([messages], k=5)[0]
            return top[0][0], top
        if self.bias == "first":
            letter = "A"
        else:
            blocks = dict(_BLOCK.findall(messages[-1]["content"]))
            letter = "A" if len(blocks.get("A", "")) >= len(blocks.get("B", "")) else "B"
        other = "B" if letter == "A" else "A"
        return letter, [(letter, math.log(0.9)), (other, math.log(0.1))]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, content_type="application/json", headers=()):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers:
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, payload: dict, headers=()) -> None:
                self._send(status, json.dumps(payload).encode(), headers=headers)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                auth = self.headers.get("Authorization", "")
                server.requests.append({"path": self.path, "auth": auth, "body": body})
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": "not found"}})
                if server.api_key and auth != f"Bearer {server.api_key}":
                    return self._json(401, {"error": {"message": "invalid API key"}})
                mode = server._next_mode()
                if mode == "429":
                    return self._json(
                        429, {"error": {"message": "slow down"}}, [("Retry-After", "0")]
                    )
                if mode == "500":
                    return self._json(500, {"error": {"message": "boom"}})
                if mode == "echo_key":
                    return self._json(400, {"error": {"message": f"bad request from {auth}"}})
                if mode == "notjson":
                    return self._send(200, b"<html>oops</html>", "text/html")
                if mode == "slow":
                    time.sleep(server.slow_s)
                if mode == "garbage":
                    token, top = "I think the first one is better", []
                else:
                    token, top = server._answer(body["messages"])
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": token},
                    "finish_reason": "length",
                }
                if body.get("logprobs") and mode != "nologprobs" and top:
                    k = int(body.get("top_logprobs") or 0)
                    choice["logprobs"] = {
                        "content": [
                            {
                                "token": token,
                                "logprob": top[0][1],
                                "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top[:k]],
                            }
                        ]
                    }
                return self._json(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", ""),
                        "choices": [choice],
                    },
                )

        return Handler
