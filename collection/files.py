"""Atomic file writes for the collection's outputs: a reader never sees half a file.

The bytes go to a hidden temporary name in the target's folder, which is then
renamed over the target (os.replace, atomic within one file system).
"""
from __future__ import annotations

import os
import uuid

__all__ = ["write_atomically"]


def write_atomically(path: str, data: bytes) -> str:
    """Writes `data` to `path` (creating its folder); returns the path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path
