"""Fuzzing the loader: random bytes and damaged copies of small valid images.

Whatever the bytes, `pipeline.stages.load` / `pipeline.imaging.decode` either return an
RGB picture the model can take, or raise one of the loader's clean errors:
`ImageRejected` (and its subclasses) or `PIL.UnidentifiedImageError`, whose `__cause__`,
when there is one, is an ordinary parsing failure from Pillow (OSError, SyntaxError,
ValueError, EOFError, struct.error, DecompressionBombError). Never MemoryError,
RecursionError, a crash of the interpreter, or a hang. A small pixel limit stops a
damaged header from making an example allocate much.
"""

from __future__ import annotations

import io
import signal
import struct
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, UnidentifiedImageError

from pipeline import stages
from pipeline.imaging import Decoded, ImageRejected, decode
from pipeline.models.efficientnet_lite0 import PREPROCESSING

MAX_PIXELS = 4_000_000
HANG_S = 10  # one example taking this long counts as a hang
CLEAN = (ImageRejected, UnidentifiedImageError)
CLEAN_CAUSES = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)
FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)


def _image(mode: str = "RGB", size: tuple[int, int] = (24, 16)) -> Image.Image:
    ramp = (np.arange(size[0] * size[1] * 3).reshape(size[1], size[0], 3) * 7 % 256).astype(np.uint8)
    return Image.fromarray(ramp, "RGB").convert(mode)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _seeds() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [_image(), _image().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return {
        "png": _encode(_image(), "PNG"),
        "png-16bit": _encode(Image.fromarray(np.full((8, 8), 4000, np.uint16)), "PNG"),
        "png-palette-trns": _encode(_image("P"), "PNG", transparency=3),
        "png-la": _encode(_image("LA"), "PNG"),
        "jpeg-exif": _encode(_image(), "JPEG", exif=exif.tobytes()),
        "jpeg-progressive": _encode(_image(), "JPEG", progressive=True),
        "jpeg-cmyk": _encode(_image("CMYK"), "JPEG"),
        "gif-animated": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "webp": _encode(_image(), "WEBP"),
        "webp-lossless-alpha": _encode(_image("RGBA"), "WEBP", lossless=True),
        "webp-animated": _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "bmp": _encode(_image(), "BMP"),
        "bmp-1bit": _encode(_image("1"), "BMP"),
        "tiff": _encode(_image(), "TIFF"),
        "tiff-deflate": _encode(_image(), "TIFF", compression="tiff_deflate"),
        "tiff-float": _encode(Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)), "TIFF"),
        "ico": _encode(_image(), "ICO"),
        "ppm": _encode(_image(), "PPM"),
    }


SEEDS = _seeds()
INTERESTING = [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x01\x00\x00"]

mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.integers(1, 64)),
    st.tuples(st.just("int"), st.integers(0, 255), st.sampled_from(INTERESTING)),
    st.tuples(st.just("splice"), st.integers(0, 1 << 16), st.sampled_from(sorted(SEEDS))),
)


def mutate(data: bytes, mutations: list[tuple]) -> bytes:
    out = bytearray(data)
    for kind, where, what in mutations:
        at = where % (len(out) + 1)
        if kind == "set" and out:
            out[at % len(out)] = what
        elif kind == "flip" and out:
            out[at % len(out)] ^= 1 << what
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = what
        elif kind == "delete":
            del out[at : at + what]
        elif kind == "int":  # header fields sit near the start
            out[at : at + 4] = what
        elif kind == "splice":  # the tail of another image after our head
            other = SEEDS[what]
            out[at:] = other[at % (len(other) + 1) :]
    return bytes(out)


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail an example that runs away (SIGALRM interrupts pure-Python loops; a loop inside
    C code is still caught by hypothesis's deadline once it returns)."""

    def interrupt(signum: int, frame: object) -> None:
        raise Hang(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_decoded(decoded: Decoded) -> None:
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (decoded.width, decoded.height)  # upright
    assert 0 < decoded.width * decoded.height <= MAX_PIXELS
    pixels = stages.preprocess(decoded.image, PREPROCESSING)  # the model can take it
    assert pixels.shape == (PREPROCESSING.crop, PREPROCESSING.crop, 3) and pixels.dtype == np.uint8


def check_clean(error: BaseException) -> None:
    assert isinstance(error, CLEAN), f"unclean {type(error).__name__}: {error}"
    cause = error.__cause__
    assert cause is None or isinstance(cause, CLEAN_CAUSES), f"unexpected cause {type(cause).__name__}: {cause}"
    assert str(error).strip(), "an error without a message"


def try_decode(data: bytes) -> None:
    with warnings.catch_warnings(), time_limit(HANG_S):
        warnings.simplefilter("ignore")
        try:
            decoded = decode(data, max_pixels=MAX_PIXELS)
        except CLEAN as error:
            check_clean(error)
            return
        check_decoded(decoded)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="wwts-fuzz-") as folder:
        yield Path(folder)


def test_the_seeds_themselves_decode() -> None:
    for data in SEEDS.values():
        check_decoded(decode(data, max_pixels=MAX_PIXELS))


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_fail_cleanly(data: bytes) -> None:
    try_decode(data)


@FUZZ
@given(seed=st.sampled_from(sorted(SEEDS)), mutations=st.lists(mutation, min_size=1, max_size=6))
def test_damaged_images_fail_cleanly(seed: str, mutations: list[tuple]) -> None:
    try_decode(mutate(SEEDS[seed], mutations))


@FUZZ
@given(seed=st.sampled_from(sorted(SEEDS)), mutations=st.lists(mutation, min_size=1, max_size=3))
def test_damaged_files_fail_cleanly_through_load(scratch: Path, seed: str, mutations: list[tuple]) -> None:
    path = scratch / f"{seed}.bin"
    path.write_bytes(mutate(SEEDS[seed], mutations))
    with warnings.catch_warnings(), time_limit(HANG_S):
        warnings.simplefilter("ignore")
        try:
            loaded, picture = stages.load(path, max_pixels=MAX_PIXELS)
        except CLEAN as error:
            check_clean(error)
            return
        assert picture.mode == "RGB" and loaded.bytes == path.stat().st_size
