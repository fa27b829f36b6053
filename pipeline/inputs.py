"""Turn the command line's paths into the list of inputs to classify, in a stable order.

What `expand` yields is either a path to open (a `str`, exactly as the OS gave it) or an
exception standing for an input that failed before any file was read: a directory with
no images, or one that cannot be listed. Such an exception carries the input's path in
`.path`; the driver reports it like any other failed input. `label` is the form of an
input to show to people and to write into JSON and log records.

A directory walk takes files named like images and files whose first bytes are a
supported image format (a PNG saved without an extension). An entry named like an image
that is not a readable regular file — a dangling symbolic link, a FIFO — is yielded all
the same, so it fails alone with its one line instead of vanishing without a word.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.text import display

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jfif", ".ppm", ".pgm", ".pbm", ".ico"}
)
SNIFF_BYTES = 16


class InputError(Exception):
    """An input that failed before a file was read; `path` is the input as given."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path


class NoImagesFound(InputError):
    """A directory holds no image files; reported like a failed input."""


def expand(paths: Iterable[str | Path], recursive: bool = False) -> Iterator[str | Exception]:
    """Yield files as given and the images inside directories (sorted by path).

    Files named explicitly are yielded whatever their name (the loader decides); a
    directory yields its images (see the module docstring), a `NoImagesFound` if there
    are none, and an `OSError` (with `.path`) for itself or any subdirectory that cannot
    be listed.
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
    """How an input is shown: its path as valid Unicode (see `pipeline.text.display`)."""
    if isinstance(item, Exception):
        path = getattr(item, "path", None)
        return display(path) if isinstance(path, str) else str(item)
    return display(os.fspath(item))


def _walk(root: Path, recursive: bool) -> list[str | Exception]:
    """Images under `root` and failures for unlistable subdirectories, sorted by path.
    Raises `OSError` when `root` itself cannot be listed. Symbolic links to directories
    are not followed (a link cycle would never end)."""
    items: list[tuple[Path, str | Exception]] = []

    def visit(folder: Path, top: bool) -> None:
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            if top:
                raise
            items.append((folder, _unlistable(str(folder), exc)))
            return
        for entry in entries:
            path = folder / entry.name
            if recursive and _is_real_dir(entry):
                visit(path, top=False)
            elif _is_input(entry):
                items.append((path, str(path)))

    visit(root, top=True)
    return [item for _key, item in sorted(items, key=lambda pair: pair[0])]


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_input(entry: os.DirEntry[str]) -> bool:
    """Named like an image and not a directory (broken links and FIFOs included, to
    fail visibly), or a regular file that starts like a supported image."""
    if _is_dir(entry):
        return False
    if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
        return True
    return _starts_like_an_image(entry)


def _starts_like_an_image(entry: os.DirEntry[str]) -> bool:
    from pipeline.imaging import supported_format

    try:
        if not entry.is_file():  # follows links; FIFOs, sockets and dangling links are not files
            return False
        fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            head = os.read(fd, SNIFF_BYTES)
        finally:
            os.close(fd)
    except OSError:  # unreadable without an image name: nothing says it is one of ours
        return False
    return supported_format(head) is not None


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
    suffixes = f"{files} file{'' if files == 1 else 's'}, none with an image suffix such as .jpg or .png or the content of one"
    if subdirectories:
        return f"no image files in the directory ({suffixes}; it has subdirectories: try --recursive)"
    return f"no image files in the directory ({suffixes})"


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
