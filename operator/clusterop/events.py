"""The Events of a pass that are not a write's own: problems (each posted once while it lasts),
a refusal of the spec, and becoming Ready. Pure: which Events, never how they are posted.

Problems are compared as values (`model.Problem`); they become text only in the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import InvalidSpec
from .model import Event, Phase, Problem, Reason
from .status import render_problems


def new_problems(posted: frozenset[Problem], problems: Sequence[Problem], *, paused: bool) -> list[Event]:
    """One Event for the problems not posted yet (a paused cluster's are Normal, not Warnings)."""
    new = [p for p in problems if p not in posted]
    if not new:
        return []
    message = render_problems(sorted(new, key=lambda p: p.message))
    return [Event("Normal" if paused else "Warning", str(problems[0].reason), message)]


def refused(previous: Mapping[str, Any], e: InvalidSpec) -> list[Event]:
    """A Warning when the spec or its Secrets are refused, once per distinct message."""
    return [] if previous.get("error") == e.message else [Event("Warning", str(e.reason), e.message)]


def became_ready(previous: Mapping[str, Any], desired: Mapping[str, Any], nodes: int) -> list[Event]:
    if desired["phase"] == Phase.READY and previous.get("phase") != Phase.READY:
        return [Event("Normal", str(Reason.READY), f"All {nodes} nodes are members and online")]
    return []
