"""Read an image file and decode it into an upright RGB picture, whatever the file's mode.

Why by hand: Pillow's `convert("RGB")` drops alpha onto black and clips 16-bit
samples; a classifier then sees a different picture than a person does.

Hostile input: every failure leaves this module as one of a few exception types with a
message a user can act on (the original exception stays chained for the log record's
stack trace):

- `ImageRejected` (a `ValueError`) and its subclasses: empty file, `DecompressionBomb`,
  `ExtremeAspectRatio`, `CorruptImage` / `TruncatedImage`, `UnsupportedImage`,
  `NotARegularFile`;
- `PIL.UnidentifiedImageError`: the bytes are no image format we accept;
- `OSError` subclasses from reading the file (`FileNotFoundError`, `PermissionError`, …),
  re-raised with a short reason instead of the path-repeating errno text.

`MemoryError` is never converted: it says something about the machine, not the file.
Pillow's `ImageFile.LOAD_TRUNCATED_IMAGES` is left False, so a truncated file fails
instead of decoding as a grey picture.

Pillow parses every header. The pixels of a plain PNG (8-bit RGB, no transparency, no
chunk Pillow would read metadata from) come from libpng by way of imagecodecs, which
releases the GIL and decodes a photo-sized PNG ~25 % faster than Pillow's own decoder,
pixel for pixel the same; anything else, and anything libpng refuses, is Pillow's.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import io
import logging
import os
import re
import stat
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.defaults import DEFAULT_MAX_PIXELS
from pipeline.text import display

MAX_ASPECT_RATIO = 200  # longer side / shorter side; see `_check_header`
WHITE = (255, 255, 255)
ORIENTATION_TAG = 0x0112
SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that turn the picture by 90 degrees
UPRIGHT = {  # EXIF orientation -> the transpose that shows the picture as intended
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Pillow identifies several dozen formats; some of them hand the bytes to external
# programs (EPS to Ghostscript) or are rarely exercised parsers. Only these are opened.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "DIB", "TIFF", "PPM", "ICO")
SUPPORTED = "JPEG, PNG, GIF, WebP, BMP, TIFF, PNM or ICO"
# Chunks of a PNG whose pixels libpng may decode for Pillow: none changes the pixels
# Pillow shows (Pillow ignores gamma and ICC profiles too) or carries what Pillow reads
# besides them (tRNS, eXIf and text chunks: transparency, orientation, XMP; APNG frames).
PLAIN_PNG_CHUNKS = frozenset(
    {b"IHDR", b"IDAT", b"IEND", b"pHYs", b"sRGB", b"gAMA", b"cHRM", b"iCCP", b"sBIT", b"tIME", b"bKGD"}
)
PNG_RGB8 = (8, 2)  # IHDR bit depth and colour type of 8-bit truecolour without alpha

_setup_lock = threading.Lock()
_quieted = False


def setup(max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Process-wide decoder settings, made once before images are decoded (a Pipeline
    calls it when built; importing this module changes nothing).

    - Pillow's own decompression-bomb guard stays on, at our limit (ours is checked
      from the header first; Pillow's also covers frames found while decoding).
    - Corrupt files make Pillow's plugins warn ("Corrupt EXIF data", "Truncated File
      Read") and log ("More samples per pixel than can be decoded"); printed, they add
      stray lines where a failed input gets exactly one. Warnings from PIL are ignored
      (a filter, not `catch_warnings()`, which is not safe with loader threads) and a
      NullHandler keeps `logging`'s last resort from printing PIL's messages, which
      still reach an application's own handlers.
    - libtiff's own stderr output is switched off (`_silence_libtiff`).
    """
    global _quieted
    with _setup_lock:
        Image.MAX_IMAGE_PIXELS = max_pixels
        if _quieted:
            return
        warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
        logging.getLogger("PIL").addHandler(logging.NullHandler())
        _silence_libtiff()
        _quieted = True


class ImageRejected(ValueError):
    """The bytes are not an image we may decode (empty, a bomb, corrupt, …)."""


class DecompressionBomb(ImageRejected):
    """The header declares more pixels than the limit; refused before decoding."""


class ExtremeAspectRatio(ImageRejected):
    """A sliver of an image (say 1x40000) that resizing would blow up to gigabytes."""


class CorruptImage(ImageRejected):
    """The format was recognised but its data could not be decoded."""


class TruncatedImage(CorruptImage):
    """The file ends before the picture does."""


class UnsupportedImage(ImageRejected):
    """Decoded, but in a mode we cannot turn into RGB."""


class NotARegularFile(ImageRejected):
    """A FIFO, device or socket: reading it could block forever or never end."""


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # RGB, upright
    width: int
    height: int
    mode: str  # the file's own mode, before conversion
    format: str


# -- reading the file -------------------------------------------------------------------


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes, or an `OSError`/`ImageRejected` whose message is a short reason.

    The file is opened without blocking and checked to be a regular file before it is
    read, so a FIFO named `x.jpg` cannot hang the run and `/dev/zero` cannot fill memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _readable_os_error(exc, path) from exc
    try:
        kind = os.fstat(fd).st_mode
        if stat.S_ISDIR(kind):
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        if not stat.S_ISREG(kind):
            raise NotARegularFile(f"not a regular file (a {_file_kind(kind)}); only image files are read")
        with os.fdopen(fd, "rb") as file:
            fd = -1  # closed by the file object from here on
            return file.read()
    except OSError as exc:
        raise _readable_os_error(exc, path) from exc
    finally:
        if fd >= 0:
            os.close(fd)


def _readable_os_error(exc: OSError, path: str | os.PathLike[str]) -> OSError:
    """The same exception type, with a reason instead of `[Errno 2] …: '/the/path'`."""
    if exc.errno == errno.ENOENT and os.path.islink(path):
        try:
            target = display(os.readlink(path))
        except OSError:
            target = "?"
        reason = f"broken symbolic link (its target {target} does not exist)"
    elif exc.errno == errno.ENOENT:
        reason = "no such file or directory"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied (the file is not readable by this user)"
    else:
        reason = exc.strerror.lower() if exc.strerror else str(exc)
    readable = type(exc)(reason)
    readable.errno = exc.errno
    return readable


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


# -- decoding ----------------------------------------------------------------------------


def decode(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> Decoded:
    """Decode the first frame, apply EXIF orientation, convert to RGB.

    The pixel count and aspect ratio are checked from the header, before any pixel is
    decoded. (JPEG draft decoding was measured and left out: benchmarks/README.md.)
    """
    if not data:
        raise ImageRejected("empty file")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise DecompressionBomb(_bomb_message(exc, max_pixels)) from exc
    except UnidentifiedImageError as exc:
        raise UnidentifiedImageError(_unidentified_message(data)) from exc
    except MemoryError:
        raise
    except Exception as exc:  # a plugin that recognised its signature, then choked on the header
        raise _corrupt(exc, _signature(data) or "image") from exc
    source_format = image.format or "unknown"
    try:
        width, height = image.size
        _check_header(width, height, max_pixels, max_aspect_ratio)
        source_mode = image.mode
        pixels = _plain_png_pixels(data, width, height) if source_format == "PNG" else None
        if pixels is not None:
            return Decoded(Image.fromarray(pixels), width, height, source_mode, source_format)
        image.load()
    except (ImageRejected, MemoryError):
        raise
    except Image.DecompressionBombError as exc:  # e.g. a GIF frame larger than the screen
        raise DecompressionBomb(_bomb_message(exc, max_pixels)) from exc
    except Exception as exc:
        raise _corrupt(exc, source_format) from exc
    orientation = _orientation(image)
    if orientation in SWAPS_AXES:
        width, height = height, width
    try:
        upright = image.transpose(UPRIGHT[orientation]) if orientation in UPRIGHT else image
        rgb = to_rgb(upright)
    except MemoryError:
        raise
    except Exception as exc:
        raise UnsupportedImage(f"cannot convert the {source_mode} {source_format} image to RGB: {_detail(exc)}") from exc
    return Decoded(rgb, width, height, source_mode, source_format)


def _plain_png_pixels(data: bytes, width: int, height: int) -> np.ndarray | None:
    """libpng's pixels of a plain PNG (see `PLAIN_PNG_CHUNKS`), or None: Pillow decodes.
    Such a file has no EXIF orientation and no alpha, so its pixels are the picture."""
    if not is_plain_png(data):
        return None
    decode_png = _libpng()
    if decode_png is None:
        return None
    try:
        pixels = decode_png(data)
    except MemoryError:
        raise
    except Exception:  # libpng refused it (truncated, bad CRC, …): Pillow says why, in its words
        return None
    if pixels.shape != (height, width, 3) or pixels.dtype != np.uint8:
        return None
    return pixels


def is_plain_png(data: bytes) -> bool:
    """An 8-bit RGB PNG whose chunks are all in `PLAIN_PNG_CHUNKS`, up to a complete IEND."""
    if len(data) < 33 or data[12:16] != b"IHDR" or (data[24], data[25]) != PNG_RGB8:
        return False
    offset, end = 8, len(data)
    while offset + 8 <= end:
        kind = data[offset + 4 : offset + 8]
        if kind not in PLAIN_PNG_CHUNKS:
            return False
        if kind == b"IEND":
            return True
        offset += 12 + int.from_bytes(data[offset : offset + 4], "big")
    return False  # truncated: Pillow's decoder tells the user so


@functools.cache
def _libpng() -> Callable[[bytes], np.ndarray] | None:
    try:
        from imagecodecs import png_decode
    except ImportError:  # an install without it decodes every PNG with Pillow
        return None
    return png_decode


def _check_header(width: int, height: int, max_pixels: int, max_aspect_ratio: float) -> None:
    if width <= 0 or height <= 0:
        raise CorruptImage(f"image declares {width}x{height} pixels: there is nothing to classify")
    if width * height > max_pixels:
        raise DecompressionBomb(
            f"image declares {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
            " (WWTS_MAX_IMAGE_PIXELS); refused before decoding"
        )
    # Classifying resizes the shorter side to ~256 px; a 1x40000 sliver (a 160-byte PNG)
    # would become 256x10 million pixels and take gigabytes. Refuse it up front.
    ratio = max(width, height) / min(width, height)
    if ratio > max_aspect_ratio:
        raise ExtremeAspectRatio(
            f"image is {width}x{height}, an aspect ratio of {ratio:.0f}:1, over the limit of {max_aspect_ratio:g}:1"
        )


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8); 1 when there is none or the EXIF block is corrupt.

    Read after `load()`: Pillow's PNG plugin loads the pixels to find a late eXIf chunk,
    and a failure there must not be mistaken for 'no orientation'.
    """
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except MemoryError:
        raise
    except Exception:  # a broken EXIF block does not spoil a picture that decoded
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def _bomb_message(exc: Exception, max_pixels: int) -> str:
    found = _BOMB_PIXELS.search(str(exc))
    declared = f"{found.group(1)} pixels" if found else "more pixels than allowed"
    return f"image declares {declared}, over the limit of {max_pixels} (WWTS_MAX_IMAGE_PIXELS); refused before decoding"


def _corrupt(exc: Exception, what: str) -> CorruptImage:
    text = str(exc)
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return TruncatedImage(f"{what} file is truncated: the data ends before the picture is complete")
    return CorruptImage(f"corrupt {what} data: {_detail(exc)}")


def _detail(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, (OSError, SyntaxError, ValueError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# (offset, magic, name, supported)
_SIGNATURES = (
    (0, b"\x89PNG\r\n\x1a\n", "PNG", True),
    (0, b"\xff\xd8\xff", "JPEG", True),
    (0, b"GIF87a", "GIF", True),
    (0, b"GIF89a", "GIF", True),
    (0, b"BM", "BMP", True),
    (0, b"II*\x00", "TIFF", True),
    (0, b"MM\x00*", "TIFF", True),
    (0, b"\x00\x00\x01\x00", "ICO", True),
    (0, b"%PDF", "PDF", False),
    (0, b"%!PS", "PostScript", False),
    (0, b"8BPS", "Photoshop", False),
    (4, b"ftypheic", "HEIC", False),
    (4, b"ftypheix", "HEIC", False),
    (4, b"ftypmif1", "HEIF", False),
    (4, b"ftypavif", "AVIF", False),
    (0, b"\x00\x00\x00\x0cjP  ", "JPEG 2000", False),
)


def _signature(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    for offset, magic, name, _supported in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


def supported_format(head: bytes) -> str | None:
    """The supported image format these first bytes announce, if any (a directory walk
    uses it for files without an image suffix). 12 bytes are enough."""
    name = _signature(head)
    supported = {n for _o, _m, n, ok in _SIGNATURES if ok} | {"WebP"}
    return name if name in supported else None


def _unidentified_message(data: bytes) -> str:
    name = _signature(data)
    supported = {n for _o, _m, n, ok in _SIGNATURES if ok} | {"WebP"}
    if name in supported:
        article = "an" if name[0] in "AEIOU" else "a"
        return f"cannot identify image file: it starts like {article} {name} file but its header is corrupt"
    if name is not None:
        return f"cannot identify image file: it is a {name} file; supported are {SUPPORTED}"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "cannot identify image file: it is an HTML page, not an image"
    if head.startswith((b"<svg", b"<?xml")):
        return f"cannot identify image file: it is XML/SVG, not a raster image; supported are {SUPPORTED}"
    try:
        text = data[:512].decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end is still text
        text = data[: exc.start].decode("utf-8") if exc.start > len(data[:512]) - 4 else ""
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "cannot identify image file: it contains text, not an image"
    return f"cannot identify image file: not a supported image format ({SUPPORTED})"


# -- to RGB ------------------------------------------------------------------------------


def to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _scale_high_depth(image)
    if mode == "La":  # premultiplied; Pillow converts it to RGBA only by way of LA
        image = image.convert("LA")
    if _has_alpha(image):
        return _flatten_on_white(image.convert("RGBA"))
    if mode == "RGB":
        return image
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info:
        return True
    return image.mode == "P" and image.palette is not None and image.palette.mode.endswith("A")


def _flatten_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _scale_high_depth(image: Image.Image) -> Image.Image:
    """16/32-bit grey to 8 bits by scaling the sample range, never by clipping."""
    samples = np.asarray(image)
    if samples.ndim == 3:  # some high-depth modes decode with a channel axis
        samples = samples[..., 0]
    samples = samples.astype(np.float64)
    finite = np.isfinite(samples)
    samples = np.where(finite, samples, 0.0)
    out_of_16_bits = image.mode == "I" and samples.size and (samples.min() < 0 or samples.max() > 65535)
    if image.mode == "F" or out_of_16_bits:  # no fixed full scale: stretch the range found
        low = float(samples[finite].min()) if finite.any() else 0.0
        high = float(samples[finite].max()) if finite.any() else 0.0
        # divide first: 255 / a denormal range overflows to inf, and 0 * inf is NaN
        scaled = (samples - low) / (high - low) * 255.0 if high > low else np.zeros_like(samples)
    else:
        full_scale = 65535.0 if image.mode.startswith("I;16") or samples.max(initial=0) > 255 else 255.0
        scaled = samples * (255.0 / full_scale)
    grey = np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


# -- libtiff's console output -------------------------------------------------------------


def _silence_libtiff() -> bool:
    """Stop libtiff printing its own errors and warnings to the process's stderr.

    Pillow decodes compressed TIFF through libtiff, whose default handlers write lines
    such as "ZIPDecode: Decoding error at scanline 0" straight to file descriptor 2. The
    decode still fails with an exception (reported as one line), so the extra lines only
    break the one-line-per-failure console. Best effort: finds the libtiff that Pillow's
    extension module loaded and sets both handlers to NULL; returns whether it did.
    """
    libraries: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and os.path.basename(fields[5].strip()).startswith("libtiff"):
                    libraries.append(fields[5].strip())
    except OSError:
        pass
    if not libraries:  # not Linux: the copy that ships inside the Pillow wheel
        package = Path(Image.__file__).resolve().parent
        libraries = [str(p) for d in (package / ".dylibs", package.parent / "pillow.libs") for p in d.glob("libtiff*")]
    silenced = False
    for library in dict.fromkeys(libraries):
        try:
            libtiff = ctypes.CDLL(library)
            for setter in (libtiff.TIFFSetErrorHandler, libtiff.TIFFSetWarningHandler):
                setter.argtypes = [ctypes.c_void_p]
                setter.restype = ctypes.c_void_p
                setter(None)
            silenced = True
        except (OSError, AttributeError):
            continue
    return silenced

