"""The operator's error tree. Callers branch on these types, never on HTTP details.

Messages never carry a secret: no encryption key, no password, no request body.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class OperatorError(Exception):
    """Base of every error the operator raises on purpose."""


class InvalidSpec(OperatorError):
    """The resource cannot be acted on as written (a condition, not a crash)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ManagerError(OperatorError):
    """Anything that went wrong talking to one manager."""


class Unreachable(ManagerError):
    """Connect error, reset or timeout: the request may or may not have arrived."""


class BadResponse(ManagerError):
    """The manager answered with something that is not the API's JSON."""


class ApiError(ManagerError):
    """The manager answered with an error body."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(f"HTTP {status} {code or 'error'}: {message}")
        self.status = status
        self.code = code
        self.message = message


class NotMaster(ApiError):
    """400 not_cluster_master: this node is a replica; ask the master."""


class RemovedNode(ApiError):
    """400 removed_from_cluster: terminal, the node can never rejoin."""


class NotFound(ApiError):
    """404: no cluster yet, or no such node."""


class Unauthorized(ApiError):
    """401 / 403: wrong credentials or not an admin."""


class ServerError(ApiError):
    """5xx: worth retrying with backoff."""


_BY_CODE: dict[str, type[ApiError]] = {
    "not_cluster_master": NotMaster,
    "removed_from_cluster": RemovedNode,
    "not_found_error": NotFound,
    "unauthorized_error": Unauthorized,
    "forbidden_error": Unauthorized,
}


def error_for(status: int, body: Mapping[str, Any] | None) -> ApiError:
    """The one place an HTTP error answer becomes a typed error."""
    body = body or {}
    code = body.get("error_code")
    message = str(body.get("message") or "")
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        if status in (401, 403):
            cls = Unauthorized
        elif status == 404:
            cls = NotFound
        elif status >= 500:
            cls = ServerError
        else:
            cls = ApiError
    return cls(status, code if isinstance(code, str) else None, message)


class Refusal(enum.StrEnum):
    """Reasons of InvalidSpec: why a pass stopped before any manager call."""

    INVALID_SPEC = "InvalidSpec"
    SECRET_MISSING = "SecretMissing"
    SECRET_KEY_MISSING = "SecretKeyMissing"
    CREDENTIALS_INVALID = "CredentialsInvalid"
    ENCRYPTION_KEY_INVALID = "EncryptionKeyInvalid"
    TLS_INVALID = "TLSInvalid"

    @property
    def waits_for_a_secret(self) -> bool:
        """Something not there yet (phase Pending), rather than something wrong (phase Invalid)."""
        return self in (Refusal.SECRET_MISSING, Refusal.SECRET_KEY_MISSING)
