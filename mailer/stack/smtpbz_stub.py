"""A local stand-in for the smtp.bz HTTP API: ``GET /v1/user`` with ``Authorization: <key>``.

It answers the fields the quota sync reads (``quota``, ``tarif_quota``, ``hlimit``,
``hsent``). The stack's process reads its numbers from a JSON state file on every request,
so an operator can edit the file to rehearse quota running out and coming back.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class StubAccount:
    api_key: str = "demo-api-key"
    quota: int = 100_000
    tarif_quota: int = 100_000
    hlimit: int = 0
    hsent: int = 0
    fail_status: int = 0  # answer every request with this HTTP status when non-zero

    @classmethod
    def load(cls, path: Path) -> StubAccount:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


class _Handler(BaseHTTPRequestHandler):
    server: SmtpBzStubServer

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        account = self.server.current_account()
        self.server.requests += 1
        if self.path.rstrip("/") != "/v1/user":
            self._send(404, {"error": "not found"})
        elif account.fail_status:
            self._send(account.fail_status, {"error": "injected failure"})
        elif self.headers.get("Authorization", "") != account.api_key:
            self._send(401, {"error": "Unauthorized: invalid API key"})
        else:
            self._send(
                200,
                {
                    "quota": account.quota,
                    "tarif_quota": account.tarif_quota,
                    "hlimit": account.hlimit,
                    "hsent": account.hsent,
                },
            )

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet in tests; the stack's process logs requests to its log file.
        if self.server.verbose:
            super().log_message(format, *args)


class SmtpBzStubServer(ThreadingHTTPServer):
    """The stub; state comes from ``account`` or, when given, from ``state_file``."""

    daemon_threads = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account: StubAccount | None = None,
        state_file: Path | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__((host, port), _Handler)
        self.account = account or StubAccount()
        self.state_file = state_file
        self.verbose = verbose
        self.requests = 0
        self._thread: threading.Thread | None = None

    def current_account(self) -> StubAccount:
        if self.state_file is not None and self.state_file.exists():
            return StubAccount.load(self.state_file)
        return self.account

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def base_url(self) -> str:
        host = self.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}/v1"

    def start(self) -> SmtpBzStubServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="local stub of the smtp.bz API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18025)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    if not args.state.exists():
        StubAccount().save(args.state)
    server = SmtpBzStubServer(args.host, args.port, state_file=args.state, verbose=True)
    print(f"smtp.bz stub listening on {server.base_url}, state {args.state}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
