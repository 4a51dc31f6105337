"""The operator's error tree. Callers branch on these types, never on HTTP details.

Messages never carry a secret: no encryption key, no password, no request body.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
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


# -- the Kubernetes API (kube.py and the kubectl plugin) -----------------------------------------


class KubeError(OperatorError):
    """The Kubernetes API refused a request, or could not be reached (status 0).

    `reason` and `message` come from the apiserver's Status object only (never from another
    body: a Secret's body holds its data); callers scrub the message of registered secrets."""

    def __init__(self, what: str, status: int = 0, reason: str = "", message: str = "") -> None:
        text = f"{what}: " + (f"HTTP {status} {reason}".rstrip() if status else reason or "unreachable")
        super().__init__(f"{text}: {message}" if message else text)
        self.what = what
        self.status = status
        self.reason = reason
        self.message = message


class KubeUnreachable(KubeError):
    """Connect error, reset or timeout: a write may or may not have been applied."""


class KubeNotFound(KubeError):
    """404: the object (or its namespace, or the resource type) does not exist."""


class KubeConflict(KubeError):
    """409: the object changed since the resourceVersion a write was based on, or already exists."""


class KubeUnauthorized(KubeError):
    """401 / 403: no valid credentials, or RBAC does not allow the verb (check the Role)."""


class KubeInvalid(KubeError):
    """400 / 422: the apiserver refused the object as written."""


class KubeServerError(KubeError):
    """5xx or 429: the apiserver is overloaded or failing; worth retrying with backoff."""


_MAX_MESSAGE = 300


def kube_error_for(what: str, status: int, body: Any, scrub: Callable[[str], str] = str) -> KubeError:
    """The one place a Kubernetes API error answer becomes a typed error; `scrub` masks secrets
    in the apiserver's message (a 422 may quote a value it refused)."""
    reason = message = ""
    if isinstance(body, Mapping) and body.get("kind") == "Status":
        reason, message = str(body.get("reason") or ""), scrub(str(body.get("message") or "")[:_MAX_MESSAGE])
    cls: type[KubeError]
    if status == 404:
        cls = KubeNotFound
    elif status == 409:
        cls = KubeConflict
    elif status in (401, 403):
        cls = KubeUnauthorized
    elif status in (400, 422):
        cls = KubeInvalid
    elif status >= 500 or status == 429:
        cls = KubeServerError
    else:
        cls = KubeError
    return cls(what, status, reason, message)


def kube_result(what: str, status: int, body: Any, scrub: Callable[[str], str] = str) -> dict[str, Any]:
    """A Kubernetes API answer's body (the JSON object), or its typed error (`body` None: not JSON)."""
    if status >= 400:
        raise kube_error_for(what, status, body, scrub)
    if not isinstance(body, dict):
        raise KubeError(what, status, "answer is not a JSON object")
    return body
