"""Files in the model cache: written whole or not at all, and content hashes remembered.

A reader must never see half a file: every write goes to a temporary file in the same
directory and is renamed over the target (`os.replace` is atomic on one filesystem), so a
crash or a second process leaves either the old file or the new one. Hashing a large
checkpoint (hundreds of MB) costs a second at every start, so its sha256 is remembered,
keyed by the file's absolute path, size and modification time: any rewrite changes the
modification time, and the file is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HASH_CHUNK = 1 << 20
WEIGHTS_MEMO = "weights-sha256.json"  # {absolute path: {"size", "mtime_ns", "sha256"}}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A fresh file beside `target` to write; renamed over `target` when the block ends
    (same filesystem, so atomically), deleted if it raises. Hidden, so a half-written
    graph is never mistaken for a cached one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json(target: Path, data: Any) -> None:
    with replacing(target) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    """The parsed file, or None if it is missing or no JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def weights_sha256(weights: Path, folder: Path) -> str:
    """The sha256 of `weights`, hashed only when the memo in `folder` does not know this
    version of the file. An unreadable memo is just forgotten: the cost is one hash."""
    weights = weights.resolve()
    stat = weights.stat()
    memo_path = folder / WEIGHTS_MEMO
    memo = read_json(memo_path)
    memo = memo if isinstance(memo, dict) else {}
    known = memo.get(str(weights))
    if isinstance(known, dict) and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
        sha256 = known.get("sha256")
        if isinstance(sha256, str):
            return sha256
    sha256 = sha256_file(weights)
    memo = {path: entry for path, entry in memo.items() if Path(path).exists()}  # forget deleted files
    memo[str(weights)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
    write_json(memo_path, memo)
    return sha256
