"""The apiserver's writes by one user, read from the test bed's audit log."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


class AuditLog:
    """Writes by one user, read from the test bed's audit log from a remembered offset."""

    def __init__(self, path: Path, user: str) -> None:
        self.path = path
        self.user = user
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def writes(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        if not self.path.exists():
            return counts
        with self.path.open("rb") as f:
            f.seek(self.offset)
            for line in f:
                if not line.endswith(b"\n"):
                    break  # half-written entry: ignore it
                entry = json.loads(line)
                if entry.get("stage") != "ResponseComplete" or entry.get("user", {}).get("username") != self.user:
                    continue
                ref = entry.get("objectRef") or {}
                resource_name = ref.get("resource", "?") + ("/" + ref["subresource"] if ref.get("subresource") else "")
                counts[f"{entry.get('verb')} {resource_name}"] += 1
        return counts
