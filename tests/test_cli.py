"""The real `wwts` command in a subprocess: JSON shape, exit codes, a broken file among
good ones, and the ECS records and trace file it leaves."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_wwts

HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, data_dir: Path):
    """A directory with two good photos and a text file named .jpg, classified once."""
    folder = tmp_path_factory.mktemp("mixed")
    shutil.copy(data_dir / "coffee.png", folder / "a_coffee.png")
    (folder / "b_broken.jpg").write_text("this is not a JPEG\n")
    shutil.copy(data_dir / "camera.png", folder / "c_camera.png")
    logs = folder.parent / (folder.name + "-logs")
    result = run_wwts("classify", str(folder), "--json", "--log-dir", str(logs))
    return folder, logs, result


def records(log_dir: Path) -> list[dict]:
    lines = []
    for path in sorted(log_dir.glob("wwts-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return lines


def test_json_lines_in_input_order_with_the_contract_shape(mixed_run) -> None:
    folder, _logs, result = mixed_run
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(o["path"]).name for o in objects] == ["a_coffee.png", "b_broken.jpg", "c_camera.png"]
    good = objects[0]
    assert set(good) == {
        "path", "ok", "md5", "bytes", "width", "height", "mode", "format", "labels", "latency_ms", "model", "runtime",
        "device", "trace_id",
    }
    assert good["ok"] is True and good["format"] == "PNG" and good["mode"] == "RGB"
    assert (good["width"], good["height"], good["bytes"]) == (600, 400, 466706)
    assert re.fullmatch(r"[0-9a-f]{32}", good["md5"]) and HEX32.match(good["trace_id"])
    assert set(good["latency_ms"]) == {"load", "preprocess", "forward", "postprocess", "total"}
    assert len(good["labels"]) == 5
    assert good["labels"][0] == {"rank": 1, "label": "浓缩咖啡", "score": good["labels"][0]["score"], "class_id": 967}
    assert all(round(l["score"], 4) == l["score"] for l in good["labels"])
    assert good["model"] == "efficientnet-lite0" and good["device"] == "cpu" and good["runtime"] == "onnxruntime"
    bad = objects[1]
    assert set(bad) == {"path", "ok", "error", "trace_id"}
    assert bad["ok"] is False and bad["error"]["type"] == "UnidentifiedImageError"
    assert objects[2]["labels"][0]["class_id"] == 872


def test_a_broken_file_fails_alone_with_one_stderr_line_and_exit_1(mixed_run) -> None:
    _folder, _logs, result = mixed_run
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "b_broken.jpg" in lines[0] and "UnidentifiedImageError" in lines[0]
    assert "Traceback" not in result.stderr


def test_the_failure_record_holds_the_stack_trace(mixed_run) -> None:
    _folder, logs, _result = mixed_run
    docs = records(logs)
    failures = [d for d in docs if d.get("event", {}).get("outcome") == "failure"]
    assert len(failures) == 1
    failure = failures[0]
    assert failure["error"]["type"] == "PIL.UnidentifiedImageError"  # as OpenTelemetry writes exception.type
    trace = failure["error"]["stack_trace"]
    assert trace.startswith("Traceback (most recent call last):") and "imaging.py" in trace
    assert trace.rstrip().endswith("it contains text, not an image")  # the final line, with the cause above
    assert failure["log.level"] == "error" and failure["file"]["name"] == "b_broken.jpg"


def first_path(result) -> str:
    return json.loads(result.stdout.splitlines()[0])["path"]


def test_inference_records_carry_the_contract_fields(mixed_run) -> None:
    folder, logs, result = mixed_run
    docs = records(logs)
    assert len({d["event"]["id"] for d in docs}) == len(docs)
    startup = [d for d in docs if d["event"]["dataset"] == "wwts.startup"]
    assert startup and startup[0]["wwts"]["startup"]["runtime"] == "onnxruntime"
    assert startup[0]["wwts"]["startup"]["runtime_version"]
    success = [d for d in docs if d["event"].get("outcome") == "success"]
    assert len(success) == 2
    doc = success[0]
    for key in ("@timestamp", "log.level", "message", "ecs.version"):
        assert key in doc
    assert doc["service"]["name"] == "wwts" and doc["service"]["version"]
    assert doc["host"]["name"] and doc["process"]["pid"] > 0
    assert doc["event"]["dataset"] == "wwts.inference" and doc["event"]["duration"] > 0
    assert doc["file"]["hash"]["md5"] and doc["file"]["size"] == 466706 and doc["file"]["name"] == "a_coffee.png"
    assert doc["wwts"]["top1"]["label"] == "浓缩咖啡" and doc["wwts"]["labels"][0]["class_id"] == 967
    assert set(doc["wwts"]["latency_ms"]) == {"load", "preprocess", "forward", "postprocess", "total"}
    assert doc["wwts"]["image"] == {"width": 600, "height": 400, "mode": "RGB", "format": "PNG"}
    assert doc["wwts"]["model"]["name"] == "efficientnet-lite0" and doc["wwts"]["device"] == "cpu"
    assert doc["wwts"]["runtime"] == "onnxruntime"
    assert doc["wwts"]["resource"]["process"]["memory"]["rss"] > 0
    assert doc["file"]["path"] == str(folder / "a_coffee.png") and doc["wwts"]["input"] == first_path(result)
    assert doc["event"]["category"] == ["file"] and doc["event"]["type"] == ["info"]
    first = json.loads(result.stdout.splitlines()[0])
    assert doc["trace"]["id"] == first["trace_id"] and re.fullmatch(r"[0-9a-f]{16}", doc["span"]["id"])


def test_the_local_trace_file_holds_the_run_as_otlp_json(mixed_run) -> None:
    _folder, logs, result = mixed_run
    trace_id = json.loads(result.stdout.splitlines()[0])["trace_id"]
    spans = []
    for path in logs.glob("traces-*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            for resource in json.loads(line)["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    spans += scope["spans"]
    mine = [s for s in spans if s["traceId"] == trace_id]
    assert sorted(s["name"] for s in mine) == sorted(["wwts.classify", "load", "preprocess", "forward", "postprocess"])
    root = next(s for s in mine if s["name"] == "wwts.classify")
    assert all(s["parentSpanId"] == root["spanId"] for s in mine if s is not root)


def test_human_output_shows_chinese_top5_and_console_lines(tmp_path: Path, data_dir: Path) -> None:
    result = run_wwts("classify", str(data_dir / "chelsea.png"), "--log-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "虎斑猫" in result.stdout
    assert re.search(r"Top-1: '(虎纹猫|埃及猫)' \(置信度: 0\.\d{4}\)", result.stderr)
    assert "Latency: load" in result.stderr and "MD5 " in result.stderr and "=" * 60 in result.stderr


def test_usage_errors_exit_2(tmp_path: Path, data_dir: Path) -> None:
    image = str(data_dir / "camera.png")
    assert run_wwts("classify", image, "--model", "nope", "--log-dir", str(tmp_path)).returncode == 2
    assert run_wwts("classify", image, "--top-k", "0").returncode == 2
    assert run_wwts("classify", image, "--batch-size", "x").returncode == 2
    refused = run_wwts("classify", image, "--device", "tpu", "--log-dir", str(tmp_path))
    assert refused.returncode == 2 and "device 'tpu'" in refused.stderr
    missing = run_wwts("classify", image, "--model", "resnest101-general", "--log-dir", str(tmp_path))
    assert missing.returncode == 2 and "needs a checkpoint directory" in missing.stderr
    assert run_wwts("classify").returncode == 2


def test_info_json_reports_runtime_and_backends(tmp_path: Path) -> None:
    result = run_wwts("info", "--json", env={"WWTS_ES_PASSWORD": "sentinel-pw-123", "WWTS_LOG_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["python"].startswith("3.") and facts["torch"] and facts["onnxruntime"]
    assert facts["runtime"] == "onnxruntime" and facts["device"] == "cpu"  # auto, on this CPU machine
    assert facts["models"] == ["efficientnet-lite0", "resnest101-general"]
    assert facts["elasticsearch"]["password"] == "set"
    assert "sentinel-pw-123" not in result.stdout + result.stderr


def test_version_prints_the_package_version() -> None:
    from wwts import __version__

    result = run_wwts("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"wwts {__version__}"


def test_help_and_log_commands_import_no_model_or_telemetry_stack() -> None:
    """`wwts --help` and the read-side commands pay for typer, not for torch, NumPy,
    Pillow or the OpenTelemetry SDK."""
    script = (
        "import sys\n"
        "from wwts.cli import build_app\n"
        "app = build_app()\n"
        "heavy = [m for m in ('torch', 'numpy', 'PIL', 'onnxruntime', 'opentelemetry.sdk', 'elasticsearch') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
