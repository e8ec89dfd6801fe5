"""A small OpenAI-compatible chat-completions server for tests, on 127.0.0.1 and a free port.

It checks the request the way a real server would (path, method, JSON body, model, messages, bearer
token) and answers in one of these modes: "ok" (a proper ``chat.completion``), "slow" (sleeps past the
client's timeout first), "error" (HTTP 500 whose body echoes the Authorization header, to prove the
client never repeats a reply body) and "malformed" (HTTP 200 with a body that is not JSON).
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "The session is saved by SecureCookieSessionInterface.save_session (fake model)."


class FakeLLM:
    """Context manager: ``with FakeLLM(model="m", api_key="k") as llm: llm.base_url``."""

    def __init__(self, model: str = "fake-model", api_key: str | None = None, mode: str = "ok") -> None:
        self.model = model
        self.api_key = api_key
        self.mode = mode
        self.slow_seconds = 3.0
        self.requests: list[dict] = []  # every accepted request body
        self.rejections: list[str] = []  # why requests were refused, for assertions
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "FakeLLM":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._send(405, {"error": {"message": "Method not allowed", "type": "invalid_request_error"}})

            def do_POST(self) -> None:
                problem, body = self._check()
                if problem:
                    fake.rejections.append(problem)
                    status = 401 if "Authorization" in problem else 404 if "path" in problem else 400
                    self._send(status, {"error": {"message": problem, "type": "invalid_request_error"}})
                    return
                fake.requests.append(body)
                if fake.mode == "slow":
                    time.sleep(fake.slow_seconds)
                if fake.mode == "error":
                    echo = self.headers.get("Authorization", "")
                    self._send(500, {"error": {"message": f"internal error for {echo}", "type": "server_error"}})
                elif fake.mode == "malformed":
                    self._send_raw(200, b'{"choices": [ this is not json')
                else:
                    self._send(200, _completion(body["model"]))

            def _check(self) -> tuple[str | None, dict]:
                if self.path != "/v1/chat/completions":
                    return f"Unknown path {self.path}", {}
                if not self.headers.get("Content-Type", "").startswith("application/json"):
                    return "Content-Type must be application/json", {}
                expected = f"Bearer {fake.api_key}" if fake.api_key else None
                if self.headers.get("Authorization") != expected:
                    return "Missing or wrong Authorization header", {}
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    return "Body is not JSON", {}
                if body.get("model") != fake.model:
                    return f"Unknown model {body.get('model')!r}", {}
                messages = body.get("messages")
                if not isinstance(messages, list) or not messages:
                    return "messages must be a non-empty list", {}
                for message in messages:
                    if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
                        return "each message needs a role of system, user or assistant", {}
                    if not isinstance(message.get("content"), str):
                        return "each message needs string content", {}
                return None, body

            def _send(self, status: int, payload: dict) -> None:
                self._send_raw(status, json.dumps(payload).encode())

            def _send_raw(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test), as real clients do

        return Handler


def _completion(model: str) -> dict:
    return {
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22},
    }
