"""`wwts elk setup`: index templates (and the lifecycle policy where the server has ILM),
then the Kibana saved objects through Kibana's import API."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from wwts.cli_support import es_client, settings
from wwts.errors import BackendError

app = typer.Typer(help="Set up Elasticsearch and Kibana for wwts.", no_args_is_help=True)

HISTOGRAM = "histogram"  # x-pack's field type: in the default distribution, not in the integ-test one
# what the exporter sends for a histogram point, as plain fields
HISTOGRAM_ARRAYS = {"type": "object", "properties": {"counts": {"type": "long"}, "values": {"type": "double"}}}


def has_ilm(client: Any) -> bool:
    """The integ-test distribution has no ILM plugin; the docker-compose server does."""
    try:
        client.ilm.get_status()
        return True
    except Exception:
        return False


def install_templates(client: Any) -> list[str]:
    from telemetry.assets import LOGS_POLICY_FILE, TRACES_TEMPLATE_FILE, json_asset
    from telemetry.names import LOGS_POLICY, LOGS_TEMPLATE, TRACES_TEMPLATE
    from telemetry.shipping import ensure_template

    done = []
    policy = None
    if has_ilm(client):
        client.ilm.put_lifecycle(name=LOGS_POLICY, **json_asset(LOGS_POLICY_FILE))
        policy = LOGS_POLICY
        done.append(f"ILM policy {LOGS_POLICY}")
    ensure_template(client, lifecycle_policy=policy)
    done.append(f"index template {LOGS_TEMPLATE}" + (f" → lifecycle {policy}" if policy else " (no ILM here: use `wwts logs prune`)"))
    client.indices.put_index_template(name=TRACES_TEMPLATE, **json_asset(TRACES_TEMPLATE_FILE))
    done.append(f"index template {TRACES_TEMPLATE}")
    done.append(install_metrics_template(client))
    return done


def install_metrics_template(client: Any) -> str:
    """The `wwts-metrics` data stream's template; where the server has no `histogram`
    field type, histograms are mapped as the exporter's counts/values arrays instead
    (sums of counts still work, percentiles need the field type)."""
    from elasticsearch import BadRequestError

    from telemetry.assets import METRICS_TEMPLATE_FILE, json_asset
    from telemetry.names import METRICS_TEMPLATE

    template = json_asset(METRICS_TEMPLATE_FILE)
    try:
        client.indices.put_index_template(name=METRICS_TEMPLATE, **template)
        return f"index template {METRICS_TEMPLATE}"
    except BadRequestError as exc:  # the reason is nested in `caused_by`
        if f"mapper type [{HISTOGRAM}]" not in json.dumps(exc.body):
            raise
    client.indices.put_index_template(name=METRICS_TEMPLATE, **without_histograms(template))
    return f"index template {METRICS_TEMPLATE} (no {HISTOGRAM} field type here: histograms as counts/values arrays)"


def without_histograms(node: Any) -> Any:
    """The template with every `histogram` mapping replaced by its counts/values arrays."""
    if isinstance(node, dict):
        if node.get("type") == HISTOGRAM:
            return HISTOGRAM_ARRAYS
        return {key: without_histograms(value) for key, value in node.items()}
    if isinstance(node, list):
        return [without_histograms(value) for value in node]
    return node


def import_saved_objects(kibana_url: str, authorization: str | None, ca_certs: str | None) -> dict[str, Any]:
    import urllib3

    from telemetry.assets import SAVED_OBJECTS_FILE, asset

    headers = {"kbn-xsrf": "true"}
    if authorization:
        headers["Authorization"] = authorization
    pool = urllib3.PoolManager(ca_certs=ca_certs) if ca_certs else urllib3.PoolManager()
    objects = asset(SAVED_OBJECTS_FILE)
    response = pool.request(
        "POST",
        kibana_url.rstrip("/") + "/api/saved_objects/_import?overwrite=true",
        fields={"file": (objects.name, objects.read_bytes(), "application/ndjson")},
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
    config = settings()
    client = es_client(config)
    try:
        for line in install_templates(client):
            typer.echo(f"installed {line}")
    except Exception as exc:
        raise BackendError.of("Elasticsearch setup failed", exc) from None
    if not kibana_url:
        typer.echo("no --kibana-url / KIBANA_URL: Kibana saved objects not imported")
        return
    assert config.es is not None
    try:
        result = import_saved_objects(kibana_url, config.es.authorization(), config.es.ca_certs)
    except Exception as exc:
        raise BackendError.of("Kibana import failed", exc) from None
    typer.echo(f"imported {result.get('successCount', 0)} Kibana saved object(s)")
