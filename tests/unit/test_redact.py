from __future__ import annotations

import base64
import logging

import pytest

from clusterop import redact


def test_every_form_of_a_secret_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    key = base64.b64encode(b"0123456789abcdef").decode()
    redact.register(key)
    logger = logging.getLogger("test.redact")
    logger.addFilter(redact.RedactingFilter())
    with caplog.at_level(logging.DEBUG, logger="test.redact"):
        logger.info(
            "key=%s b64=%s hex=%s raw-hex=%s",
            key,
            base64.b64encode(key.encode()).decode(),
            key.encode().hex(),
            b"0123456789abcdef".hex(),
        )
    text = caplog.records[0].getMessage()
    assert key not in text and b"0123456789abcdef".hex() not in text
    assert text.count(redact.MASK) == 4


def test_short_values_are_not_registered() -> None:
    redact.register("ab")
    assert redact.scrub("ab cd") == "ab cd"


def _naive_scrub(text: str, values: frozenset[str]) -> str:
    for value in sorted(values, key=lambda v: (-len(v), v)):
        text = text.replace(value, redact.MASK)
    return text


def test_the_indexed_scan_masks_what_a_scan_per_value_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scrub looks up each position of a line by its first characters instead of searching the
    line once per registered value (thousands with many clusters): same result, overlaps included."""
    import random

    rng = random.Random(17)
    alphabet = "ab01=:/+"
    values = frozenset("".join(rng.choice(alphabet) for _ in range(rng.randint(4, 9))) for _ in range(300))
    monkeypatch.setattr(redact, "_values", values)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet + " x") for _ in range(rng.randint(0, 60)))
        assert redact.scrub(text) == _naive_scrub(text, values), text


def test_values_registered_between_lines_are_masked_without_rebuilding_the_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Clusters' Secrets are read one after another while log lines pass: each `register` adds
    to the index instead of making the next line rebuild it (9% of the operator's CPU at 1,000
    clusters forming), and a line still masks every value registered before it."""
    import secrets

    monkeypatch.setattr(redact, "_values", frozenset({"zzzzzz"}))
    assert redact.scrub("a zzzzzz") == "a " + redact.MASK  # indexes the values set aside here
    rebuilds = []
    real = redact._rebuild
    monkeypatch.setattr(redact, "_rebuild", lambda values: (rebuilds.append(len(values)), real(values)))
    keys = []
    for _ in range(200):
        keys.append(base64.b64encode(secrets.token_bytes(16)).decode())
        redact.register(keys[-1])
        line = " ".join(keys[-3:]) + " " + base64.b64decode(keys[-1]).hex()
        assert redact.scrub(line) == _naive_scrub(line, redact._values)
        assert not any(k in redact.scrub(line) for k in keys)
    assert rebuilds == []
