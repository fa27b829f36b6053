"""Bad input, as users and attackers supply it: every odd-but-valid image classifies, and
every broken input fails alone (one stderr line naming file and reason, an `ok:false`
JSON object, a failure record with the stack trace) while the run goes on (exit 1).

The real CLI runs twice for the whole module (model loading costs seconds per run):
once with `--json` over a directory of nasty files, once in human mode over the odd
names. Unit-level checks go through `pipeline.stages.load` on the same files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFile

from pipeline import stages
from pipeline.defaults import DEFAULT_MAX_PIXELS
from pipeline.imaging import DecompressionBomb, NotARegularFile, decode, read_file, setup
from pipeline.inputs import NoImagesFound, expand, label
from pipeline.text import display
from tests.conftest import DATA, ROOT, WWTS, run_wwts, user_env

COFFEE = 967  # top-1 class of the sample coffee.png ("浓缩咖啡")
LIMIT = 1_000_000  # WWTS_MAX_IMAGE_PIXELS for the JSON run: refuses big.jpg, passes 600x400
DROP_DAC = "--bounding-set=-dac_override,-dac_read_search"


@dataclass(frozen=True)
class Bad:
    error_type: str | tuple[str, ...]
    reason: str  # a substring of the message


GOOD = [  # classify, top-1 as the original photo unless None
    ("cmyk.jpg", COFFEE),
    ("rgba.png", COFFEE),
    ("la.png", COFFEE),
    ("palette.png", COFFEE),
    ("grey16.png", COFFEE),
    ("bilevel.png", None),  # dithered to black and white: only "classifies" is asked
    ("anim.gif", COFFEE),
    ("anim.webp", COFFEE),
    ("exif_rotated.jpg", COFFEE),
    ("photo.webp", COFFEE),
    ("photo.bmp", COFFEE),
    ("photo.tiff", COFFEE),
    ("no_extension", COFFEE),
    ("with space.png", COFFEE),
    ("咖啡 照片.png", COFFEE),
    ("a\nb.png", COFFEE),
    ("\x1b[31mred.png", COFFEE),
    ("line\u2028sep.png", COFFEE),
]
BAD = {
    "missing.jpg": Bad("FileNotFoundError", "no such file"),
    "empty.jpg": Bad("ImageRejected", "empty file"),
    "text.jpg": Bad("UnidentifiedImageError", "contains text, not an image"),
    "page.jpg": Bad("UnidentifiedImageError", "HTML page"),
    "truncated.jpg": Bad("TruncatedImage", "JPEG file is truncated"),
    "garbage.png": Bad("UnidentifiedImageError", "starts like a PNG file but its header is corrupt"),
    "corrupt.tiff": Bad(("CorruptImage", "TruncatedImage"), "TIFF"),
    "bomb.png": Bad("DecompressionBomb", "10000000000 pixels"),
    "big.jpg": Bad("DecompressionBomb", f"over the limit of {LIMIT}"),
    "sliver.png": Bad("ExtremeAspectRatio", "aspect ratio of 40000:1"),
    "dangling.png": Bad("FileNotFoundError", "broken symbolic link"),
    "pipe.jpg": Bad("NotARegularFile", "named pipe"),
    "empty_dir": Bad("NoImagesFound", "no image files"),
    "bad\nname\x1b[0m.jpg": Bad("UnidentifiedImageError", "contains text"),
    "locked.jpg": Bad("PermissionError", "permission denied"),
    "locked_dir": Bad("PermissionError", "cannot list the directory"),
}
NEEDS_UNREADABLE = {"locked.jpg", "locked_dir"}
NON_UTF8_NAME = b"bad\xffname.png"


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height grey pixels, with almost no data."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")


def with_transparent_corner(image: Image.Image) -> Image.Image:
    alpha = Image.new("L", image.size, 255)
    alpha.paste(0, (0, 0, 80, 80))
    image = image.copy()
    image.putalpha(alpha)
    return image


def unprivileged_prefix(probe_dir: Path) -> list[str] | None:
    """How to run a command that cannot read a mode-000 file: nothing to add for a normal
    user; for root (which reads anything), drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH with
    setpriv. None when neither works (then the unreadable cases are skipped, not faked)."""
    probe = probe_dir / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        check = [sys.executable, "-c", f"open({str(probe)!r}, 'rb')"]
        if os.geteuid() != 0:
            return [] if subprocess.run(check, capture_output=True, check=False).returncode != 0 else None
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return None
        refused = subprocess.run([setpriv, DROP_DAC, *check], capture_output=True, check=False)
        return [setpriv, DROP_DAC] if b"PermissionError" in refused.stderr else None
    finally:
        probe.chmod(0o600)
        probe.unlink()


def build(folder: Path, unreadable: bool) -> list[str]:
    """Write every case into `folder`; return the CLI arguments, in order."""
    photo = Image.open(DATA / "coffee.png").convert("RGB")  # 600x400
    rng = random.Random(20240601)
    good = {
        "cmyk.jpg": encode(photo.convert("CMYK"), "JPEG", quality=92),
        "rgba.png": encode(with_transparent_corner(photo), "PNG"),
        "la.png": encode(with_transparent_corner(photo.convert("L")), "PNG"),
        "palette.png": encode(photo.quantize(255), "PNG", transparency=0),
        "grey16.png": encode(Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257), "PNG"),
        "bilevel.png": encode(photo.convert("1"), "PNG"),
        "anim.gif": encode(photo, "GIF", save_all=True, append_images=[Image.new("RGB", photo.size, "green")], duration=80),
        "anim.webp": encode(photo, "WEBP", save_all=True, append_images=[Image.new("RGB", photo.size, "green")], duration=80),
        "photo.webp": encode(photo, "WEBP", quality=90),
        "photo.bmp": encode(photo, "BMP"),
        "photo.tiff": encode(photo, "TIFF", compression="tiff_lzw"),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter to the left; viewers turn it back clockwise
    good["exif_rotated.jpg"] = encode(photo.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif.tobytes())
    same = encode(photo, "PNG")
    for name in ("no_extension", "with space.png", "咖啡 照片.png", "a\nb.png", "\x1b[31mred.png", "line\u2028sep.png"):
        good[name] = same
    for name, data in good.items():
        (folder / name).write_bytes(data)
    (folder / os.fsdecode(NON_UTF8_NAME)).write_bytes(same)

    jpeg = encode(photo, "JPEG", quality=90)
    tiff = bytearray(encode(photo, "TIFF", compression="tiff_deflate"))
    for offset in range(400, len(tiff) // 2, 97):  # damage the compressed strips, not the header
        tiff[offset] ^= 0x5A
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a JPEG\n")
    (folder / "page.jpg").write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>\n")
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.randbytes(4096))
    (folder / "corrupt.tiff").write_bytes(bytes(tiff))
    (folder / "bomb.png").write_bytes(bomb_png(100_000, 100_000))
    (folder / "big.jpg").write_bytes(encode(photo.resize((1500, 1000)), "JPEG"))
    (folder / "sliver.png").write_bytes(encode(Image.new("L", (1, 40_000), 128), "PNG"))
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "empty_dir").mkdir()
    (folder / "bad\nname\x1b[0m.jpg").write_text("plain text\n")
    if unreadable:
        (folder / "locked.jpg").write_bytes(jpeg)
        (folder / "locked.jpg").chmod(0)
        (folder / "locked_dir").mkdir()
        (folder / "locked_dir" / "inside.png").write_bytes(same)
        (folder / "locked_dir").chmod(0)

    names = [name for name, _ in GOOD] + [os.fsdecode(NON_UTF8_NAME)]
    names += [name for name in BAD if unreadable or name not in NEEDS_UNREADABLE]
    return [str(folder / name) for name in names]


@dataclass
class Run:
    folder: Path
    logs: Path
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    unreadable: bool

    def objects(self) -> dict[str, dict]:
        """JSON objects by input file name (stdout is in input order)."""
        objects = [json.loads(line) for line in self.stdout.splitlines()]
        return {os.path.basename(arg): obj for arg, obj in zip(self.args, objects, strict=True)}

    def records(self) -> list[dict]:
        docs = []
        for path in sorted(self.logs.glob("wwts-*.jsonl")):
            # JSON Lines are split at "\n" only: a U+2028 in a file name stays raw in a record
            docs += [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]
        return docs


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("hostile")
    logs = tmp_path_factory.mktemp("hostile-logs")
    prefix = unprivileged_prefix(folder)
    args = build(folder, unreadable=prefix is not None)
    env = user_env({"WWTS_MAX_IMAGE_PIXELS": str(LIMIT)})
    command = [*(prefix or []), *WWTS, "classify", *args, "--json", "--log-dir", str(logs)]
    done = subprocess.run(command, capture_output=True, env=env, cwd=ROOT, timeout=300, check=False)
    run = Run(
        folder, logs, args, done.returncode,
        done.stdout.decode("utf-8"),  # strict: the output must be valid UTF-8 whatever the names
        done.stderr.decode("utf-8"),
        unreadable=prefix is not None,
    )
    yield run
    for locked in ("locked.jpg", "locked_dir"):
        if (folder / locked).exists():
            (folder / locked).chmod(0o700)


def needs(run: Run, name: str) -> None:
    if name in NEEDS_UNREADABLE and not run.unreadable:
        pytest.skip("running as root without setpriv: root reads every file, so no unreadable input can be made")


# -- the JSON run --------------------------------------------------------------------------


def test_one_json_line_per_input_and_exit_1(hostile: Run) -> None:
    assert hostile.returncode == 1, hostile.stderr
    lines = hostile.stdout.splitlines()  # splits at \n, \x85, U+2028 … too
    assert len(lines) == len(hostile.args)
    for line, arg in zip(lines, hostile.args, strict=True):
        assert json.loads(line)["path"] == label(arg)
    assert "Traceback" not in hostile.stderr and "Logging error" not in hostile.stderr


@pytest.mark.parametrize(("name", "top1"), GOOD, ids=[repr(name) for name, _ in GOOD])
def test_odd_but_valid_images_classify(hostile: Run, name: str, top1: int | None) -> None:
    result = hostile.objects()[name]
    assert result["ok"] is True, result
    assert len(result["labels"]) == 5 and result["labels"][0]["score"] > 0
    if top1 is not None:
        assert result["labels"][0]["class_id"] == top1, result["labels"][0]
    assert (result["width"], result["height"]) == (600, 400)  # upright size, also for the EXIF-rotated one


def test_file_formats_and_modes_are_reported_as_found(hostile: Run) -> None:
    objects = hostile.objects()
    found = {name: (objects[name]["format"], objects[name]["mode"]) for name in (
        "cmyk.jpg", "rgba.png", "la.png", "palette.png", "grey16.png", "bilevel.png", "anim.gif",
        "photo.webp", "photo.bmp", "photo.tiff", "no_extension")}
    assert found == {
        "cmyk.jpg": ("JPEG", "CMYK"), "rgba.png": ("PNG", "RGBA"), "la.png": ("PNG", "LA"),
        "palette.png": ("PNG", "P"), "grey16.png": ("PNG", "I;16"), "bilevel.png": ("PNG", "1"),
        "anim.gif": ("GIF", "P"), "photo.webp": ("WEBP", "RGB"), "photo.bmp": ("BMP", "RGB"),
        "photo.tiff": ("TIFF", "RGB"), "no_extension": ("PNG", "RGB"),
    }


def test_a_name_that_is_not_utf8_is_shown_escaped_everywhere(hostile: Run) -> None:
    shown = os.path.join(str(hostile.folder), "bad\\xffname.png")
    result = hostile.objects()[os.fsdecode(NON_UTF8_NAME)]
    assert result["ok"] is True and result["path"] == shown
    record = next(d for d in hostile.records() if d.get("file", {}).get("path") == shown)
    assert record["event"]["outcome"] == "success" and record["file"]["hash"]["md5"] == result["md5"]


@pytest.mark.parametrize("name", list(BAD), ids=[repr(name) for name in BAD])
def test_a_bad_input_fails_alone(hostile: Run, name: str) -> None:
    needs(hostile, name)
    expected = BAD[name]
    types = expected.error_type if isinstance(expected.error_type, tuple) else (expected.error_type,)
    path = label(str(hostile.folder / name))

    result = hostile.objects()[name]
    assert result["ok"] is False and result["path"] == path
    assert result["error"]["type"] in types and expected.reason in result["error"]["message"], result

    shown = path.replace("\n", "\\n").replace("\x1b", "\\x1b")  # as the console escapes it
    lines = [line for line in hostile.stderr.splitlines() if shown in line]
    assert len(lines) == 1, hostile.stderr
    assert "[ERROR]" in lines[0] and result["error"]["type"] in lines[0] and expected.reason in lines[0]

    failures = [
        d for d in hostile.records()
        if d.get("event", {}).get("outcome") == "failure" and d.get("file", {}).get("path") == path
    ]
    assert len(failures) == 1
    error = failures[0]["error"]
    # records name the class as OpenTelemetry does (module.QualName); the JSON line as the contract does
    assert error["type"].rsplit(".", 1)[-1] == result["error"]["type"] and error["message"] == result["error"]["message"]
    assert error["stack_trace"].startswith("Traceback") and "driver.py" in error["stack_trace"]


def test_the_console_has_exactly_one_line_per_failure_and_nothing_else(hostile: Run) -> None:
    failed = sum(1 for name in BAD if hostile.unreadable or name not in NEEDS_UNREADABLE)
    lines = hostile.stderr.splitlines()
    assert len(lines) == failed, hostile.stderr  # no libtiff/Pillow chatter, no warnings
    assert all("[ERROR]" in line for line in lines)
    assert "\x1b" not in hostile.stderr


# -- the human-mode run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def human(hostile: Run, tmp_path_factory: pytest.TempPathFactory):
    names = ["a\nb.png", "\x1b[31mred.png", "咖啡 照片.png", "bad\nname\x1b[0m.jpg"]
    logs = tmp_path_factory.mktemp("human-logs")
    result = run_wwts("classify", *(str(hostile.folder / n) for n in names), "--log-dir", str(logs),
                      env={"WWTS_LATENCY_ALERT_MS": "600000"})
    return result, hostile.folder


def test_the_console_escapes_newlines_and_terminal_sequences(human) -> None:
    result, folder = human
    assert result.returncode == 1
    assert "\x1b" not in result.stderr and "\x1b" not in result.stdout
    assert f"Input: {folder}/a\\nb.png (600x400" in result.stderr
    assert f"Input: {folder}/\\x1b[31mred.png (600x400" in result.stderr
    assert f"Input: {folder}/咖啡 照片.png (600x400" in result.stderr
    failure = [line for line in result.stderr.splitlines() if "[ERROR]" in line]
    assert len(failure) == 1 and f"{folder}/bad\\nname\\x1b[0m.jpg: UnidentifiedImageError" in failure[0]
    stdout = result.stdout.splitlines()
    assert len(stdout) == 4 and stdout[0].startswith(f"{folder}/a\\nb.png\t浓缩咖啡")


# -- unit level: what the model is given -------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(DATA / "coffee.png").convert("RGB"), dtype=np.int16)


def load(path: Path) -> SimpleNamespace:
    """The image's facts and its RGB picture (`.image`), as the load stage gives them."""
    info, picture = stages.load(path, DEFAULT_MAX_PIXELS)
    return SimpleNamespace(**dataclasses.asdict(info), image=picture)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(load(path).image, dtype=np.int16)


def test_transparent_areas_are_white(hostile: Run) -> None:
    for name in ("rgba.png", "la.png"):
        loaded = load(hostile.folder / name)
        assert loaded.image.mode == "RGB"
        assert loaded.image.getpixel((10, 10)) == (255, 255, 255)  # inside the transparent corner
        assert loaded.image.getpixel((300, 200)) != (255, 255, 255)
    loaded = load(hostile.folder / "palette.png")
    index_zero = np.asarray(Image.open(hostile.folder / "palette.png")) == 0
    assert index_zero.any() and (np.asarray(loaded.image)[index_zero] == 255).all()


def test_16_bit_grey_is_scaled_to_the_8_bit_picture(hostile: Run, photo: np.ndarray) -> None:
    grey = np.asarray(Image.open(DATA / "coffee.png").convert("L"), dtype=np.int16)
    loaded = pixels(hostile.folder / "grey16.png")
    assert np.abs(loaded[..., 0] - grey).max() <= 1  # clipping would make nearly all of it white


def test_exif_rotation_is_undone_before_the_model(hostile: Run, photo: np.ndarray) -> None:
    loaded = load(hostile.folder / "exif_rotated.jpg")
    assert (loaded.width, loaded.height) == (600, 400) and loaded.image.size == (600, 400)
    assert np.abs(np.asarray(loaded.image, dtype=np.int16) - photo).mean() < 4  # JPEG noise only


def test_animations_give_their_first_frame_and_cmyk_its_colours(hostile: Run, photo: np.ndarray) -> None:
    for name in ("anim.gif", "anim.webp", "cmyk.jpg", "photo.webp", "photo.bmp", "photo.tiff"):
        assert np.abs(pixels(hostile.folder / name) - photo).mean() < 12, name  # not the green frame


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_gigapixel_header_is_refused_before_decoding() -> None:
    setup(DEFAULT_MAX_PIXELS)
    with pytest.raises(DecompressionBomb, match=r"100000x100000|10000000000 pixels"):
        decode(bomb_png(100_000, 100_000))
    setup(1_000_000_000)  # what a pipeline with WWTS_MAX_IMAGE_PIXELS=1e9 does once
    try:
        with pytest.raises(DecompressionBomb, match="40000x40000 = 1600000000 pixels"):
            decode(bomb_png(40_000, 40_000), max_pixels=1_000_000_000)  # between the limit and Pillow's 2x
    finally:
        setup(DEFAULT_MAX_PIXELS)


def test_the_pixel_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from wwts.settings import Settings

    monkeypatch.setenv("WWTS_MAX_IMAGE_PIXELS", "1234")
    assert Settings.from_env().max_image_pixels == 1234


def test_truncated_images_are_never_filled_in_grey() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")  # no writer: reading it would wait forever
    with pytest.raises(NotARegularFile, match="named pipe"):
        read_file(tmp_path / "pipe.png")
    with pytest.raises(NotARegularFile, match="device"):
        read_file("/dev/zero")  # would never end
    with pytest.raises(IsADirectoryError, match="is a directory"):
        read_file(tmp_path)


def test_missing_and_dangling_paths_have_short_reasons(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        read_file(tmp_path / "nope.jpg")
    assert str(missing.value) == "no such file or directory"
    (tmp_path / "link.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(FileNotFoundError, match=r"broken symbolic link \(its target .*gone.jpg does not exist\)"):
        read_file(tmp_path / "link.jpg")


def test_directories_without_images_say_why(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    (tmp_path / "notes" / "deeper").mkdir()
    (tmp_path / "notes" / "deeper" / "b.png").write_bytes(b"")
    empty, notes = list(expand([tmp_path / "empty", tmp_path / "notes"]))
    assert isinstance(empty, NoImagesFound) and empty.path == str(tmp_path / "empty")
    assert str(empty) == "empty directory: no image files"
    assert isinstance(notes, NoImagesFound) and "try --recursive" in str(notes) and "(1 file, none" in str(notes)
    assert list(expand([tmp_path / "notes"], recursive=True)) == [str(tmp_path / "notes" / "deeper" / "b.png")]
    assert label(empty) == str(tmp_path / "empty")


def test_labels_are_valid_unicode() -> None:
    assert display(os.fsdecode(b"/x/\xff\xfe.png")) == "/x/\\xff\\xfe.png"
    assert display("/x/咖啡\n.png") == "/x/咖啡\n.png"  # escaping for the terminal is the console's job
    assert label("/x/\udcff") == "/x/\\xff"


def test_a_walk_takes_images_without_a_suffix_and_reports_broken_links(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(DATA / "coffee.png", folder / "no_extension")  # a PNG saved without a suffix
    (folder / "notes.txt").write_text("not an image")  # skipped: neither named nor shaped like one
    (folder / "photo.jpg").symlink_to(tmp_path / "gone.jpg")  # dangling, named like an image
    (folder / "README").symlink_to(tmp_path / "gone")  # dangling, named like nothing in particular
    os.mkfifo(folder / "pipe.png")
    assert list(expand([folder])) == [str(folder / n) for n in ("no_extension", "photo.jpg", "pipe.png")]
    deeper = folder / "sub"
    deeper.mkdir()
    shutil.copy(DATA / "rocket.jpg", deeper / "IMG_0001")
    assert str(deeper / "IMG_0001") in list(expand([folder], recursive=True))


def test_a_broken_link_in_a_directory_fails_alone_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(DATA / "coffee.png", folder / "no_extension")
    (folder / "photo.jpg").symlink_to(tmp_path / "gone.jpg")
    done = run_wwts("classify", str(folder), "--json", "--log-dir", str(tmp_path / "logs"))
    assert done.returncode == 1, done.stderr
    objects = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(Path(o["path"]).name, o["ok"]) for o in objects] == [("no_extension", True), ("photo.jpg", False)]
    assert objects[0]["labels"][0]["class_id"] == COFFEE and objects[0]["format"] == "PNG"
    [line] = [line for line in done.stderr.splitlines() if line.strip()]
    assert "photo.jpg" in line and "broken symbolic link" in line
