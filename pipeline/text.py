"""Text that is safe to show and to store: the one home of wwts's escaping.

File names are bytes on Linux; Python keeps undecodable bytes as lone surrogates,
which JSON, log files and OTLP cannot carry, and a name can hold newlines or terminal
escape sequences. `display` makes any path valid Unicode; `printable` makes text safe
for a terminal line.
"""

from __future__ import annotations

import os


def display(path: str | bytes) -> str:
    """A path as valid Unicode. Bytes that are not UTF-8 become `\\xff` escapes;
    everything else is unchanged (terminal escaping is `printable`'s job)."""
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate that no file name can contain
        return valid(str(path))
    return raw.decode("utf-8", "backslashreplace")


def valid(text: str) -> str:
    """`text` with lone surrogates escaped, so that UTF-8 encoders accept it."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def printable(text: str) -> str:
    """Newlines, terminal escape sequences and other non-printables as escapes."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
