"""Turn the command line's paths into the list of files to classify, in a stable order."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jfif", ".ppm", ".pgm", ".pbm", ".ico"}
)


class NoImagesFound(Exception):
    """A directory holds no image files; reported like a failed input."""


def expand(paths: Iterable[str | Path], recursive: bool = False) -> Iterator[str | NoImagesFound]:
    """Yield files as given and the image files inside directories (sorted).

    Files named explicitly are yielded whatever their suffix (the loader decides);
    a directory yields only files with an image suffix, and a `NoImagesFound` if none.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(_walk(path, recursive))
            if not found:
                yield NoImagesFound(f"{raw}: no image files in directory" + ("" if recursive else " (try --recursive)"))
            yield from (str(p) for p in found)
        else:
            yield str(raw)


def _walk(root: Path, recursive: bool) -> Iterator[Path]:
    if recursive:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in files:
                if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                    yield Path(folder) / name
    else:
        for entry in root.iterdir():
            if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
                yield entry
