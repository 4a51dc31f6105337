"""Keeps secrets out of every log line: a registry of sensitive values and a logging filter.

Every value read from a Secret is registered before use; the filter replaces each value, and
its base64 and hex forms, in every formatted record of every logger (kopf's included).
"""

from __future__ import annotations

import base64
import logging
import threading

MASK = "<redacted>"
_MIN_LEN = 4  # shorter values would mask ordinary words
_lock = threading.Lock()
_values: frozenset[str] = frozenset()


def register(value: str) -> None:
    """Remember a secret value (and its encodings) so no log line ever shows it."""
    global _values, _indexed
    if len(value) < _MIN_LEN or value in _values:
        return  # too short to mask safely, or known already (every pass re-reads its Secrets)
    raw = value.encode()
    forms = {
        value,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        raw.hex(),
    }
    try:  # the key is itself base64: its decoded bytes' hex is a form too
        decoded = base64.b64decode(value, validate=True)
        if len(decoded) >= _MIN_LEN:
            forms.add(decoded.hex())
    except ValueError:
        pass
    with _lock:
        new = {f for f in forms if len(f) >= _MIN_LEN} - _values
        if _indexed is not _values:  # set aside (tests do): index what is there first
            _rebuild(_values)
        for form in new:  # each entry is replaced whole: a scan meanwhile sees the old or the new
            _index[form[:_MIN_LEN]] = (*_index.get(form[:_MIN_LEN], ()), form)
        _values = _indexed = _values | new


#: values by their first _MIN_LEN characters, for the `_values` it was built from: a line is
#: scanned once, position by position, instead of once per value (a thousand clusters register
#: some fifteen thousand forms, and every log line of every logger passes through here).
#: `register` adds to it as it adds values: rebuilding it whenever a value was added cost 9% of
#: the operator's CPU while 1,000 clusters formed (their Secrets are read one after another).
_index: dict[str, tuple[str, ...]] = {}
_indexed: frozenset[str] = frozenset()


def _rebuild(values: frozenset[str]) -> None:
    global _index, _indexed
    index: dict[str, list[str]] = {}
    for v in values:
        index.setdefault(v[:_MIN_LEN], []).append(v)
    _index, _indexed = {k: tuple(vs) for k, vs in index.items()}, values


def _index_of() -> dict[str, tuple[str, ...]]:
    """The index of `_values` (a superset of what a scan read before: values are only added)."""
    if _indexed is not _values:  # only when `_values` was set by other means than `register`
        with _lock:
            if _indexed is not _values:
                _rebuild(_values)
    return _index


def scrub(text: str) -> str:
    """`text` with every registered value replaced by MASK (longest first, so a value inside
    another is masked after it)."""
    values = _values
    if not values or len(text) < _MIN_LEN:
        return text
    index = _index_of()
    found: set[str] = set()
    for i in range(len(text) - _MIN_LEN + 1):
        candidates = index.get(text[i : i + _MIN_LEN])
        if candidates:
            found.update(v for v in candidates if text.startswith(v, i))
    for value in sorted(found, key=lambda v: (-len(v), v)):
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _values:
            return True
        message = record.getMessage()
        clean = scrub(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def install() -> None:
    """Attach the filter to every handler of the root logger (call after logging is set up)."""
    f = RedactingFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(f)
