"""The package as a user installs it: a wheel built from the checkout, installed into a
fresh virtual environment, run from a directory outside the checkout. Everything it reads
at run time (index templates, Kibana objects, labels, sample photos) must come with it.

The fresh environment takes the third-party dependencies from the project's own venv
(a path entry, so nothing is downloaded again) but wwts itself only from the wheel.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, unique_photos, user_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin/` directory of a fresh venv holding the wheel of this checkout."""
    base = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(base / "dist"), str(ROOT)],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (base / "dist").glob("wwts-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for packaged in ("deploy/elk/index-template.json", "deploy/elk/traces-template.json",
                     "deploy/elk/kibana/saved-objects.ndjson", "pipeline/labels/imagenet_zh.txt"):
        assert packaged in names, packaged
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    fresh_site = next((venv / "lib").glob("python3*/site-packages"))
    (fresh_site / "project-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    return venv / "bin"


def run(bin_dir: Path, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = user_env(env)
    full.pop("PYTHONPATH", None)
    return subprocess.run([str(bin_dir / "wwts"), *args], capture_output=True, text=True, cwd=cwd, env=full,
                          check=False, timeout=300)


def test_the_wheel_is_what_runs(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "python"), "-c", "import wwts, deploy.elk, pipeline; print(wwts.__file__, pipeline.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=False,
    )
    assert where.returncode == 0, where.stderr
    assert str(ROOT) not in where.stdout and "site-packages" in where.stdout


def test_elk_setup_and_a_shipping_classify_from_the_wheel(
    installed: Path, tmp_path: Path, es, es_url: str, otlp_endpoint: str
) -> None:
    """Outside the checkout: `elk setup` finds its templates in the package; a classify
    run ships its records, and records and spans name the service from OTEL_SERVICE_NAME."""
    service = f"photo-svc-{os.getpid()}"
    setup = run(installed, "elk", "setup", cwd=tmp_path, env={"WWTS_ES_URL": es_url})
    assert setup.returncode == 0, setup.stderr
    assert "index template wwts-logs" in setup.stdout and "index template wwts-traces" in setup.stdout

    photo = unique_photos(tmp_path / "photos", 1)[0]
    env = {"WWTS_ES_URL": es_url, "OTEL_SERVICE_NAME": service, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint}
    done = run(installed, "classify", str(photo), "--json", "--log-dir", str(tmp_path / "logs"), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    trace_id = json.loads(done.stdout)["trace_id"]
    shipped = run(installed, "logs", "ship", cwd=tmp_path, env={**env, "WWTS_LOG_DIR": str(tmp_path / "logs")})
    assert shipped.returncode == 0, shipped.stderr

    deadline = time.monotonic() + 30
    records, spans = [], []
    while time.monotonic() < deadline and not (records and len(spans) >= 5):
        es.indices.refresh(index="wwts-*", ignore_unavailable=True, allow_no_indices=True)
        query = {"term": {"trace.id": trace_id}}
        records = [h["_source"] for h in es.search(index="wwts-logs-*", query=query)["hits"]["hits"]]
        spans = [h["_source"] for h in es.search(index="wwts-traces*", query={"term": {"TraceId": trace_id}},
                                                   ignore_unavailable=True)["hits"]["hits"]]
        time.sleep(0.5)
    assert records and {r["service"]["name"] for r in records} == {service}
    assert len(spans) == 5 and {s["Resource.service.name"] for s in spans} == {service}
