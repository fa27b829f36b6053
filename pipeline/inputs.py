"""Turn the command line's paths into the list of files to classify, in a stable order.

What `expand` yields is either a path to open (a `str`, exactly as the OS gave it) or an
exception standing for an input that failed before any file was read: a directory with
no images, or one that cannot be listed. Such an exception carries the input's path in
`.path`; the runner reports it like any other failed input. `label` is the form of an
input to show to people and to write into JSON and log records.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jfif", ".ppm", ".pgm", ".pbm", ".ico"}
)


class InputError(Exception):
    """An input that failed before a file was read; `path` is the input as given."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path


class NoImagesFound(InputError):
    """A directory holds no image files; reported like a failed input."""


def expand(paths: Iterable[str | Path], recursive: bool = False) -> Iterator[str | Exception]:
    """Yield files as given and the image files inside directories (sorted).

    Files named explicitly are yielded whatever their suffix (the loader decides);
    a directory yields only files with an image suffix, a `NoImagesFound` if none, and
    an `OSError` (with `.path`) for itself or any subdirectory that cannot be listed.
    """
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            yield str(raw)
            continue
        try:
            found = _walk(path, recursive)
        except OSError as exc:
            yield _unlistable(str(raw), exc)
            continue
        if not any(isinstance(item, str) for item in found):
            yield NoImagesFound(str(raw), _why_no_images(path, recursive))
        yield from found


def label(item: str | os.PathLike[str] | Exception) -> str:
    """How an input is shown: its path as valid Unicode (see `display`)."""
    if isinstance(item, Exception):
        path = getattr(item, "path", None)
        return display(path) if isinstance(path, str) else str(item)
    return display(os.fspath(item))


def display(path: str | bytes) -> str:
    """A path as valid Unicode text. Bytes that are not UTF-8 (which Python keeps as lone
    surrogates in `str` paths) become `\\xff` escapes, so JSON, log files and OTLP can
    carry the name; everything else is unchanged (escaping for the terminal is the
    console's job)."""
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate that no file name can contain
        return str(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _walk(root: Path, recursive: bool) -> list[str | Exception]:
    """Image files under `root` and failures for unreadable subdirectories, sorted by path.
    Raises `OSError` when `root` itself cannot be listed."""
    items: list[tuple[Path, str | Exception]] = []
    if not recursive:
        with os.scandir(root) as entries:
            for entry in entries:
                if _is_image_name(entry.name) and _is_file(entry):
                    items.append((root / entry.name, str(root / entry.name)))
        return [item for _key, item in sorted(items, key=lambda pair: pair[0])]
    errors: list[OSError] = []
    for folder, dirs, files in os.walk(root, onerror=errors.append):
        dirs.sort()
        for name in files:
            if _is_image_name(name):
                items.append((Path(folder) / name, str(Path(folder) / name)))
    for error in errors:
        if error.filename == os.fspath(root):  # the top itself: the caller reports it
            raise error
        where = os.fsdecode(error.filename) if error.filename is not None else str(root)
        items.append((Path(where), _unlistable(where, error)))
    return [item for _key, item in sorted(items, key=lambda pair: pair[0])]


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()  # follows symlinks: a dangling one is skipped
    except OSError:
        return False


def _unlistable(path: str, exc: OSError) -> OSError:
    reason = exc.strerror.lower() if exc.strerror else str(exc)
    error = type(exc)(f"cannot list the directory: {reason}")
    error.errno = exc.errno
    error.path = path  # type: ignore[attr-defined]  # read by `label`
    error.__cause__ = exc
    return error


def _why_no_images(path: Path, recursive: bool) -> str:
    try:
        entries = list(os.scandir(path))
    except OSError:
        entries = []
    if not entries:
        return "empty directory: no image files"
    subdirectories = sum(1 for entry in entries if _is_dir(entry))
    files = len(entries) - subdirectories
    if recursive:
        return "no image files in the directory or its subdirectories"
    suffixes = f"{files} file{'' if files == 1 else 's'}, none with an image suffix such as .jpg or .png"
    if subdirectories:
        return f"no image files in the directory ({suffixes}; it has subdirectories: try --recursive)"
    return f"no image files in the directory ({suffixes})"


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
