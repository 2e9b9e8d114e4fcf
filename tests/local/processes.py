"""What the local stack's self-tests ask of processes they started."""

from __future__ import annotations

from pathlib import Path


def gone(pid: int) -> bool:
    """Whether a process (not necessarily our child) has ended: no such pid, or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"
