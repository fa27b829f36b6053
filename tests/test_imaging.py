"""Decoding every mode to the RGB picture a person sees."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import imaging, stages
from pipeline.defaults import DEFAULT_MAX_PIXELS
from pipeline.imaging import Decoded, DecompressionBomb, ImageRejected, decode
from tests.conftest import DATA


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def test_rgba_transparent_area_becomes_white() -> None:
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    rgb = decode(encode(image, "PNG")).image
    assert rgb.mode == "RGB"
    assert rgb.getpixel((5, 5)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) == (0, 0, 255)


def test_la_and_palette_transparency_on_white() -> None:
    la = Image.new("LA", (4, 4), (0, 0))
    assert decode(encode(la, "PNG")).image.getpixel((1, 1)) == (255, 255, 255)
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    data = encode(palette, "PNG", transparency=1)
    decoded = decode(data)
    assert decoded.mode == "P"
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)


def test_cmyk_jpeg_converts_to_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    decoded = decode(encode(cmyk, "JPEG", quality=95))
    assert decoded.mode == "CMYK"
    red, green, blue = decoded.image.getpixel((8, 8))
    assert red > 200 and green < 60 and blue < 60


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    samples = np.full((4, 4), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    image = Image.fromarray(samples)
    decoded = decode(encode(image, "PNG"))
    value = decoded.image.getpixel((0, 0))
    assert value[0] == value[1] == value[2]
    assert 126 <= value[0] <= 129  # clipping would give 255


def test_one_bit_and_grey_become_rgb() -> None:
    bilevel = Image.new("1", (4, 4), 1)
    assert decode(encode(bilevel, "PNG")).image.getpixel((0, 0)) == (255, 255, 255)
    grey = Image.new("L", (4, 4), 77)
    assert decode(encode(grey, "BMP")).image.getpixel((0, 0)) == (77, 77, 77)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    red, green, _ = decode(data).image.getpixel((4, 4))
    assert red > 200 and green < 50


def test_exif_orientation_is_applied_before_the_model_sees_it() -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    decoded = decode(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert (decoded.width, decoded.height) == (20, 40)
    assert decoded.image.size == (20, 40)
    top = decoded.image.getpixel((10, 5))
    assert top[0] > 200  # the white half is now on top


def test_decompression_bomb_is_refused_before_decoding() -> None:
    data = encode(Image.new("L", (100, 100)), "PNG")
    with pytest.raises(DecompressionBomb, match="over the limit of 5000"):
        decode(data, max_pixels=5000)


def test_empty_and_garbage_bytes_are_clear_errors() -> None:
    with pytest.raises(ImageRejected, match="empty file"):
        decode(b"")
    with pytest.raises(Exception, match="cannot identify image file"):
        decode(b"this is text, not an image")


def test_load_hashes_the_bytes_it_decodes(tmp_path: Path) -> None:
    import hashlib

    data = encode(Image.new("RGB", (9, 7), (1, 2, 3)), "PNG")
    path = tmp_path / "图 片 .png"
    path.write_bytes(data)
    loaded, picture = stages.load(path, DEFAULT_MAX_PIXELS)
    assert picture.size == (9, 7) and picture.mode == "RGB"
    assert loaded.md5 == hashlib.md5(data).hexdigest()
    assert (loaded.bytes, loaded.width, loaded.height, loaded.mode, loaded.format) == (len(data), 9, 7, "RGB", "PNG")


def test_importing_the_decoder_changes_nothing_process_wide() -> None:
    """Importing defines; `setup()` (called by the driver) installs the filters, once."""
    import subprocess
    import sys

    script = (
        "import logging, warnings\n"
        "import numpy, PIL.Image\n"  # (they install warning filters of their own)
        "before = (list(warnings.filters), list(logging.getLogger('PIL').handlers))\n"
        "limit = PIL.Image.MAX_IMAGE_PIXELS\n"
        "import pipeline.imaging as imaging, pipeline.stages\n"
        "assert (list(warnings.filters), list(logging.getLogger('PIL').handlers)) == before, 'import changed state'\n"
        "assert PIL.Image.MAX_IMAGE_PIXELS == limit\n"
        "imaging.setup(1234)\n"
        "assert PIL.Image.MAX_IMAGE_PIXELS == 1234 and len(warnings.filters) == len(before[0]) + 1\n"
        "imaging.setup(1234)\n"
        "assert len(warnings.filters) == len(before[0]) + 1, 'setup is not idempotent'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# -- plain PNGs: libpng's pixels, Pillow's everything else ----------------------------------


def _photo() -> Image.Image:
    return Image.open(DATA / "coffee.png").convert("RGB")


def _pillow_only(data: bytes, monkeypatch: pytest.MonkeyPatch) -> Decoded:
    with monkeypatch.context() as patched:
        patched.setattr(imaging, "_plain_png_pixels", lambda *args: None)
        return decode(data)


def _with_chunk(png: bytes, kind: bytes, body: bytes, *, after_idat: bool) -> bytes:
    """`png` with one more chunk, just before IEND or just after IHDR."""
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    at = len(png) - 12 if after_idat else 33
    return png[:at] + chunk + png[at:]


@pytest.mark.parametrize(
    "params", [{}, {"optimize": True}, {"interlace": 1}, {"compress_level": 0}], ids=["default", "optimized", "interlaced", "stored"]
)
def test_plain_png_pixels_are_pillows_pixels(params: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    photo = _photo()
    data = encode(photo, "PNG", **params)
    assert imaging.is_plain_png(data)
    assert imaging._plain_png_pixels(data, *photo.size) is not None  # libpng decoded it
    fast, slow = decode(data), _pillow_only(data, monkeypatch)
    assert (fast.width, fast.height, fast.mode, fast.format) == (slow.width, slow.height, slow.mode, slow.format)
    assert fast.image.mode == "RGB"
    assert np.array_equal(np.asarray(fast.image), np.asarray(slow.image))
    assert np.array_equal(np.asarray(fast.image), np.asarray(photo))


def test_gamma_and_icc_chunks_do_not_change_the_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(_photo(), "PNG", icc_profile=ImageCms_profile())
    data = _with_chunk(data, b"gAMA", struct.pack(">I", 100000), after_idat=False)  # gamma 1.0, far from sRGB
    assert imaging.is_plain_png(data)
    assert np.array_equal(np.asarray(decode(data).image), np.asarray(_pillow_only(data, monkeypatch).image))


def ImageCms_profile() -> bytes:  # noqa: N802 - any well-formed ICC profile will do
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_pngs_with_what_pillow_reads_besides_pixels_stay_pillows() -> None:
    photo = _photo()
    exif = Image.Exif()
    exif[0x0112] = 6
    late_exif = _with_chunk(encode(photo, "PNG"), b"eXIf", exif.tobytes(), after_idat=True)
    assert not imaging.is_plain_png(late_exif)
    assert decode(late_exif).image.size == (photo.height, photo.width)  # the orientation still turns it
    keyed = encode(photo, "PNG", transparency=(255, 255, 255))
    texted = _with_chunk(encode(photo, "PNG"), b"tEXt", b"Comment\0hello", after_idat=True)
    for data in (keyed, texted, encode(photo.convert("RGBA"), "PNG"), encode(photo.convert("L"), "PNG")):
        assert not imaging.is_plain_png(data)
    sixteen_bits = bytearray(encode(photo, "PNG"))
    sixteen_bits[24] = 16  # IHDR's bit depth
    assert not imaging.is_plain_png(bytes(sixteen_bits))


def test_a_broken_plain_png_fails_in_pillows_words(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(_photo(), "PNG")
    truncated = data[: len(data) // 2]
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF  # one flipped byte in the compressed pixels: libpng sees a bad CRC
    assert imaging.is_plain_png(bytes(damaged)) and not imaging.is_plain_png(truncated)
    for broken in (truncated, bytes(damaged)):
        with pytest.raises(ImageRejected) as fast:
            decode(broken)
        with pytest.raises(ImageRejected) as slow:
            _pillow_only(broken, monkeypatch)
        assert (type(fast.value), str(fast.value)) == (type(slow.value), str(slow.value))
