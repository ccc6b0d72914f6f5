"""A small client for Label Studio's REST API (checked against Label Studio 1.23.2).

Only the standard library. Measured before choosing: `label-studio-sdk==2.1.2` installs 71
packages into an empty environment (`pip install --dry-run --report`), among them pandas, numpy,
OpenCV, nltk, Pillow, black and httpx; the calls critic makes (list, create and update projects,
import tasks, export them with their annotations, list users, exchange a token) take this one
module, so there is nothing to pin and no extra to install.

Authentication takes either kind of token Label Studio hands out:

- a personal access token (Account & Settings, or `POST /api/token/`): a JWT refresh token,
  exchanged at `/api/token/refresh` for a short-lived access token sent as `Bearer` (and
  exchanged again when it expires);
- a legacy token, sent as `Authorization: Token T`. Label Studio 1.23 turns legacy tokens off
  for new organizations (an admin can turn them on under Organization → API tokens).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from critic.errors import CriticError


class LabelStudioError(CriticError):
    """Label Studio cannot be reached, refuses the token, or refuses a request."""


def _is_refresh_token(token: str) -> bool:
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return False
    return isinstance(claims, dict) and claims.get("token_type") == "refresh"


class Client:
    """One Label Studio server, as one user.

    Args:
        url: the server's address (`http://localhost:8080`).
        token: a personal access token or a legacy token (see the module's docstring).
        timeout: seconds per request.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 120.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise LabelStudioError(
                f"Label Studio URL {url!r} is not an http:// or https:// address",
                hint="give the address you open in the browser, e.g. http://localhost:8080",
            )
        if not token.strip():
            raise LabelStudioError(
                "no Label Studio token",
                hint="copy yours from Label Studio: Account & Settings → Personal Access Token",
            )
        self.url = url.rstrip("/")
        self.token = token.strip()
        self.timeout = timeout
        self._access: str | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _authorization(self, *, renew: bool = False) -> str:
        if not _is_refresh_token(self.token):
            return f"Token {self.token}"
        if self._access is None or renew:
            found = self._send("POST", "/api/token/refresh/", {"refresh": self.token}, auth=None)
            if not isinstance(found, dict) or not isinstance(found.get("access"), str):
                raise LabelStudioError(f"{self.url}/api/token/refresh/ gave no access token")
            self._access = found["access"]
        return f"Bearer {self._access}"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request (JSON in, JSON out); a LabelStudioError naming the call otherwise."""
        try:
            return self._send(method, path, body, auth=self._authorization())
        except _Unauthorized:
            if not _is_refresh_token(self.token):
                raise self._refused() from None
            try:  # the access token may have expired
                return self._send(method, path, body, auth=self._authorization(renew=True))
            except _Unauthorized:
                raise self._refused() from None

    def _refused(self) -> LabelStudioError:
        hint = "use a personal access token (Account & Settings in Label Studio)"
        if not _is_refresh_token(self.token):
            hint += "; legacy tokens are off for new organizations in Label Studio 1.23"
        return LabelStudioError(f"{self.url} refused the token (401)", hint=hint)

    def _send(self, method: str, path: str, body: Any, *, auth: str | None) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth is not None:
            headers["Authorization"] = auth
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        where = f"{method} {self.url}{path.split('?')[0]}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            if exc.code == 401 and auth is not None:
                raise _Unauthorized from None
            raise LabelStudioError(
                f"{where}: HTTP {exc.code}: {_detail(text)}",
                hint="check the project and the token's permissions"
                if exc.code in (403, 404)
                else None,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LabelStudioError(
                f"cannot reach Label Studio at {self.url}: {reason}",
                hint="is it running? `label-studio start` serves it on http://localhost:8080",
            ) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise LabelStudioError(f"{where}: the answer is not JSON") from None

    # -- the calls critic makes -------------------------------------------------------------

    def projects(self) -> list[dict[str, Any]]:
        """Every project the token's user sees."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.request("GET", f"/api/projects/?page={page}&page_size=100")
            if isinstance(answer, list):  # unpaginated servers
                return answer
            found.extend(answer.get("results") or [])
            if not answer.get("next"):
                return found
            page += 1

    def project(self, project_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/projects/{project_id}/"))

    def create_project(self, settings: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/api/projects/", settings))

    def update_project(self, project_id: int, settings: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/api/projects/{project_id}/", settings))

    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> int:
        """Import tasks (with their predictions); return how many Label Studio added."""
        if not tasks:
            return 0
        answer = self.request("POST", f"/api/projects/{project_id}/import", list(tasks))
        return int(answer.get("task_count", len(tasks))) if isinstance(answer, dict) else 0

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of a project with its annotations, in Label Studio's JSON export."""
        answer = self.request(
            "GET", f"/api/projects/{project_id}/export?exportType=JSON&download_all_tasks=true"
        )
        if not isinstance(answer, list):
            raise LabelStudioError(f"the export of project {project_id} is not a list of tasks")
        return answer

    def users(self) -> dict[int, dict[str, Any]]:
        """The organization's users by id (the export names annotators by id only)."""
        answer = self.request("GET", "/api/users/")
        listed = answer.get("results", []) if isinstance(answer, dict) else answer
        return {int(u["id"]): u for u in listed if isinstance(u, dict) and "id" in u}


class _Unauthorized(Exception):
    pass


def _detail(text: str) -> str:
    """The useful part of an error body (Label Studio answers JSON with `detail` or field
    errors)."""
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "no detail"
    if isinstance(body, dict):
        parts = [body[key] for key in ("detail", "message", "validation_errors") if body.get(key)]
        if parts:
            return "; ".join(p if isinstance(p, str) else json.dumps(p) for p in parts)[:1500]
    return json.dumps(body)[:1500]
