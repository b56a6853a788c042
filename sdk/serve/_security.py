"""Who may talk to `perdure serve`: the token, the UI's session cookie, CSRF and body limits.

- A token is required to bind anything but loopback (``--token-file`` or
  ``PERDURE_TOKEN``). With a token, every route but the login page and the
  static files needs it: ``Authorization: Bearer TOKEN`` for the API, or the
  session cookie the login form sets (HttpOnly, SameSite=Strict; it holds an
  HMAC of the token, never the token).
- Every write (POST) must carry the ``X-Perdure-Request`` header, which a
  cross-site form cannot send and cross-origin JavaScript cannot send without a
  CORS preflight the gateway never grants; an ``Origin`` header, when present,
  must be the gateway's own.
- Without a token, a request whose ``Host`` is not a loopback name is refused
  (a DNS-rebinding page would otherwise reach the gateway as its own origin).
- Request bodies over `MAX_BODY_BYTES` are refused with 413 before they are read whole.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from pathlib import Path

from perdure.serve._wire import CSRF_HEADER, MAX_BODY_BYTES

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "MAX_BODY_BYTES",
    "BodyTooLargeError",
    "Guard",
    "TokenError",
    "is_loopback",
    "read_token",
]

COOKIE = "perdure_session"
_MIN_TOKEN = 16


class TokenError(ValueError):
    """The token setting is missing or unusable (``perdure serve`` reports it and exits 2)."""


class BodyTooLargeError(ValueError):
    """A request body is over the limit (answered with HTTP 413)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token_file: str | None, host: str) -> str | None:
    """The token from ``--token-file`` or ``PERDURE_TOKEN``; required off loopback."""
    token: str | None = None
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"--token-file {token_file!r}: cannot read it ({exc})") from None
        if not token:
            raise TokenError(f"--token-file {token_file!r} is empty")
    else:
        token = os.environ.get("PERDURE_TOKEN", "").strip() or None
    if token is None and not is_loopback(host):
        raise TokenError(
            f"--host {host} is reachable from other machines: give a token with --token-file "
            "FILE or PERDURE_TOKEN (make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe())'`)"
        )
    if token is not None and len(token) < _MIN_TOKEN:
        raise TokenError(f"the token is {len(token)} characters long; use {_MIN_TOKEN} or more")
    return token


class Guard:
    """Checks one request's credentials and write protection; `token=None` lets every caller in."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.session = (
            hmac.new(token.encode(), b"perdure-ui-session", hashlib.sha256).hexdigest()
            if token is not None
            else None
        )

    def allowed(self, authorization: str | None, cookie: str | None) -> bool:
        if self.token is None or self.session is None:
            return True
        if authorization is not None:
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), self.token.encode()
            ):
                return True
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.session.encode())

    def login(self, given: str) -> str | None:
        """The session cookie's value for a correct token, else None."""
        if self.token is None or self.session is None:
            return None
        if hmac.compare_digest(given.encode(), self.token.encode()):
            return self.session
        return None

    def host_refusal(self, host: str | None) -> str | None:
        """Without a token, only loopback names may be in ``Host`` (DNS rebinding: a page of
        another site whose name resolves to 127.0.0.1 would otherwise be same-origin)."""
        if self.token is not None:
            return None
        name = (
            (host or "").rsplit(":", 1)[0]
            if not (host or "").startswith("[")
            else ((host or "").split("]")[0] + "]")
        )
        if name in ("localhost", "[::1]") or is_loopback(name):
            return None
        return f"Host {host!r} is not a loopback name; without a token only those are served"

    @staticmethod
    def write_refusal(marker: str | None, origin: str | None, own_origin: str) -> str | None:
        """Why a write request is refused as a possible CSRF, or None if it may go on."""
        if marker is None:
            return f"a write request needs the {CSRF_HEADER} header (CSRF protection)"
        if origin is not None and origin != "null" and origin.rstrip("/") != own_origin:
            return f"cross-origin write refused (Origin {origin!r} is not {own_origin!r})"
        if origin == "null":
            return "cross-origin write refused (Origin null)"
        return None


def check_size(declared: str | None) -> None:
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BodyTooLargeError("bad Content-Length") from None
        if size > MAX_BODY_BYTES:
            raise BodyTooLargeError(f"the request body is {size} bytes; at most {MAX_BODY_BYTES}")
