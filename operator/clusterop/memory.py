"""Keep the process's memory close to what it uses (glibc only; a no-op elsewhere).

Reconcile passes run in worker threads; glibc gives each thread its own malloc arena and keeps
freed memory in them, so a burst (1,000 clusters forming at once) leaves RSS far above what the
process holds afterwards. Two arenas are plenty for a few busy threads, and a periodic
malloc_trim returns freed pages to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time

log = logging.getLogger("clusterop.memory")
M_ARENA_MAX = -8

_libc: ctypes.CDLL | None = None
try:
    _name = ctypes.util.find_library("c")
    if _name:
        _libc = ctypes.CDLL(_name)
        if not hasattr(_libc, "mallopt") or not hasattr(_libc, "malloc_trim"):
            _libc = None
except OSError:
    _libc = None


def limit_arenas(arenas: int = 2) -> bool:
    """Call before worker threads start. True when glibc took the setting."""
    return bool(_libc is not None and _libc.mallopt(M_ARENA_MAX, arenas) == 1)


def trim() -> None:
    """Give freed heap memory back to the system."""
    if _libc is not None:
        _libc.malloc_trim(0)


def trim_every(seconds: float) -> None:
    """A daemon thread that trims every `seconds` (cheap: a few ms on a 200 MiB heap)."""
    if _libc is None:
        return

    def loop() -> None:
        while True:
            time.sleep(seconds)
            trim()

    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()
