"""`wwts elk setup`: index templates (and the lifecycle policy where the server has ILM),
then the Kibana saved objects through Kibana's import API."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from wwts.cli_support import backend_failure, es_client_or_exit, settings_or_exit
from wwts.settings import Settings

ELK = Path(__file__).resolve().parent.parent / "deploy" / "elk"
LOGS_POLICY = "wwts-logs"
TRACES_TEMPLATE = "wwts-traces"
SAVED_OBJECTS = ELK / "kibana" / "saved-objects.ndjson"

app = typer.Typer(help="Set up Elasticsearch and Kibana for wwts.", no_args_is_help=True)


def has_ilm(client: Any) -> bool:
    """The integ-test distribution has no ILM plugin; the docker-compose server does."""
    try:
        client.ilm.get_status()
        return True
    except Exception:
        return False


def install_templates(client: Any) -> list[str]:
    from telemetry.shipping import ensure_template

    done = []
    policy = None
    if has_ilm(client):
        body = json.loads((ELK / "ilm-policy.json").read_text(encoding="utf-8"))
        client.ilm.put_lifecycle(name=LOGS_POLICY, **body)
        policy = LOGS_POLICY
        done.append(f"ILM policy {LOGS_POLICY} (delete after 7 days)")
    ensure_template(client, lifecycle_policy=policy)
    done.append("index template wwts-logs" + (f" → lifecycle {policy}" if policy else " (no ILM here: use `wwts logs prune`)"))
    traces = json.loads((ELK / "traces-template.json").read_text(encoding="utf-8"))
    client.indices.put_index_template(name=TRACES_TEMPLATE, **traces)
    done.append(f"index template {TRACES_TEMPLATE}")
    return done


def import_saved_objects(kibana_url: str, settings: Settings, path: Path = SAVED_OBJECTS) -> dict[str, Any]:
    import urllib3

    headers = {"kbn-xsrf": "true"}
    if settings.es_api_key:
        headers["Authorization"] = f"ApiKey {settings.es_api_key}"
    elif settings.es_username and settings.es_password:
        token = base64.b64encode(f"{settings.es_username}:{settings.es_password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    pool = urllib3.PoolManager(ca_certs=settings.es_ca_certs) if settings.es_ca_certs else urllib3.PoolManager()
    response = pool.request(
        "POST",
        kibana_url.rstrip("/") + "/api/saved_objects/_import?overwrite=true",
        fields={"file": (path.name, path.read_bytes(), "application/ndjson")},
        headers=headers,
        timeout=urllib3.Timeout(total=30.0),
    )
    body = json.loads(response.data or b"{}")
    if response.status != 200 or not body.get("success", False):
        errors = body.get("errors") or body.get("message") or response.status
        raise RuntimeError(f"Kibana import answered {response.status}: {str(errors)[:300]}")
    return body


@app.command()
def setup(
    kibana_url: Annotated[str | None, typer.Option("--kibana-url", envvar="KIBANA_URL", help="Kibana base URL.")] = None,
) -> None:
    """Install the index templates (and ILM where present); import the Kibana saved objects."""
    settings = settings_or_exit()
    client = es_client_or_exit(settings)
    try:
        for line in install_templates(client):
            typer.echo(f"installed {line}")
    except Exception as exc:
        raise backend_failure("Elasticsearch setup failed", exc) from None
    if not kibana_url:
        typer.echo("no --kibana-url / KIBANA_URL: Kibana saved objects not imported")
        return
    try:
        result = import_saved_objects(kibana_url, settings)
    except Exception as exc:
        raise backend_failure("Kibana import failed", exc) from None
    typer.echo(f"imported {result.get('successCount', 0)} Kibana saved object(s) from {SAVED_OBJECTS.name}")
