"""HTTP/1.1 plumbing: parse a request, hand it to the application, write the raw response.

The response is written by hand in one `write` so that keep-alive stays fast (no Nagle
stall between headers and body) and so faults can cut a body short or drop the
connection. Request headers are never logged: they carry credentials.
"""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from leadrat_source.sandbox.app import Application
from leadrat_source.sandbox.errors import ApiError
from leadrat_source.sandbox.messages import Request, Response, WireMode, json_response

MAX_BODY_BYTES = 1_000_000


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Application):
        super().__init__(address, RequestHandler)
        self.app = app


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: SandboxHTTPServer

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the default log would print paths for every request."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._write(json_response(400, ApiError("invalid_request", "Body too large.")
                                      .envelope()))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(name, value)
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(self.command, parts.path, query, headers, body)
        self._write(self.server.app.handle(request))

    def _write(self, response: Response) -> None:
        if response.wire is WireMode.DROP:
            self.close_connection = True
            return
        reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        if response.content_type and response.status != 204:
            lines.append(f"Content-Type: {response.content_type}")
        body = b"" if response.status == 204 else response.body
        if response.status != 204:
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        if response.wire is WireMode.TRUNCATE:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD":
            body = b""
        if response.wire is WireMode.TRUNCATE:
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(head + body)
        self.wfile.flush()


class ServerThread:
    """Runs a SandboxHTTPServer in a daemon thread until `stop`."""

    def __init__(self, host: str, port: int, app: Application):
        self.httpd = SandboxHTTPServer((host, port), app)
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="sandbox-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=2)
