"""What every part of the test bed shares: the checkout it runs from, its error, its stderr voice."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


class TestBedError(RuntimeError):
    """The control plane could not be found, built, started or reached."""

    __test__ = False  # not a pytest test class


def say(message: str) -> None:
    print(f"testbed: {message}", file=sys.stderr, flush=True)
