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
