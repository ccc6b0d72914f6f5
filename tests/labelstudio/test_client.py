"""What a user sees when Label Studio cannot be used: no server there, a refused token, a bad
URL; and a personal access token is exchanged for an access token and again when it expires.

The server here is a few lines of `http.server` speaking the parts of Label Studio's token API
the client uses (tests/labelstudio/test_server.py talks to the real one)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from critic.cli import app
from critic.labelstudio.client import Client, LabelStudioError
from tests.web.live import free_port


def jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(claims)}.signature"


PAT = jwt({"token_type": "refresh", "user_id": "1"})


class TokenServer:
    """Answers `/api/token/refresh/` with a new access token each time, and `/api/projects/`
    only to the newest access token (the older ones have "expired")."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.seen: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.path == "/api/token/refresh/" and body == {"refresh": PAT}
                server.issued.append(f"access-{len(server.issued)}")
                self._answer(200, {"access": server.issued[-1]})

            def do_GET(self) -> None:
                server.seen.append(self.headers.get("Authorization", ""))
                newest = server.issued[-1] if server.issued else None
                if self.headers.get("Authorization") != f"Bearer {newest}":
                    self._answer(401, {"detail": "Token is invalid or expired"})
                else:
                    self._answer(200, {"results": [{"id": 3, "title": "harm"}], "next": None})

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def tokens() -> Iterator[TokenServer]:
    server = TokenServer()
    yield server
    server.http.shutdown()


def test_a_personal_access_token_is_exchanged_and_renewed_when_it_expires(
    tokens: TokenServer,
) -> None:
    client = Client(tokens.url, PAT)
    assert client.projects() == [{"id": 3, "title": "harm"}]
    tokens.issued.append("access-from-elsewhere")  # ours expires
    assert client.projects() == [{"id": 3, "title": "harm"}]
    assert tokens.seen == ["Bearer access-0", "Bearer access-0", "Bearer access-2"]


def test_a_refused_legacy_token_says_what_to_use(tokens: TokenServer) -> None:
    with pytest.raises(LabelStudioError, match="refused the token") as err:
        Client(tokens.url, "legacy-token").projects()
    assert err.value.hint and "personal access token" in err.value.hint
    assert "legacy tokens are off" in err.value.hint


def test_no_server_and_a_bad_url_are_errors_that_say_so(tmp_path: Any) -> None:
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'c.db'}"
    result = runner.invoke(app, ["ls", "pull", "--url", f"http://127.0.0.1:{free_port()}",
                                 "--token", "t", "--project", "harm", "--db", db])  # fmt: skip
    assert result.exit_code == 1
    assert "cannot reach Label Studio" in result.output and "is it running?" in result.output
    result = runner.invoke(app, ["ls", "pull", "--url", "localhost:8080", "--token", "t",
                                 "--project", "harm", "--db", db])  # fmt: skip
    assert "is not an http:// or https:// address" in result.output
