"""An Elasticsearch client from the `WWTS_ES_*` settings, with bounded timeouts.

Credentials go straight from the environment into the client and nowhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from wwts.settings import Settings

REQUEST_TIMEOUT_S = 2.0


def client(settings: Settings, timeout: float = REQUEST_TIMEOUT_S) -> Elasticsearch:
    from elasticsearch import Elasticsearch

    if not settings.es_url:
        raise ValueError("WWTS_ES_URL is not set")
    options: dict[str, Any] = {"request_timeout": timeout, "max_retries": 0, "retry_on_timeout": False}
    if settings.es_api_key:
        options["api_key"] = settings.es_api_key
    elif settings.es_username and settings.es_password:
        options["basic_auth"] = (settings.es_username, settings.es_password)
    if settings.es_ca_certs:
        options["ca_certs"] = settings.es_ca_certs
    return Elasticsearch(settings.es_url, **options)


def ping(settings: Settings) -> bool:
    """Whether the cluster answers. `GET /` is missing from the integ-test distribution,
    so ask for cluster health instead."""
    try:
        client(settings, timeout=1.0).cluster.health()
        return True
    except Exception:
        return False
