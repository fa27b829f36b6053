"""Elasticsearch connection settings and the client built from them, with bounded timeouts.

The one place that decides how wwts authenticates (an API key wins over a username and
password); the Kibana import and the local collector's environment use the same choice.
Credentials go from the environment into the client and nowhere else: they are kept out
of `repr`, so no log line or traceback can print them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

REQUEST_TIMEOUT_S = 2.0  # while a run ships in the background
INTERACTIVE_TIMEOUT_S = 10.0  # `wwts logs search`, `trace show`, `elk setup`


@dataclass(frozen=True)
class EsConfig:
    url: str | None
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None

    @property
    def uses_api_key(self) -> bool:
        return bool(self.api_key)

    @property
    def uses_basic_auth(self) -> bool:
        return not self.api_key and bool(self.username and self.password)

    def authorization(self) -> str | None:
        """The HTTP Authorization header value, or None (security off)."""
        if self.uses_api_key:
            return f"ApiKey {self.api_key}"
        if self.uses_basic_auth:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return f"Basic {token}"
        return None


def client(config: EsConfig, timeout: float = REQUEST_TIMEOUT_S) -> Elasticsearch:
    from elasticsearch import Elasticsearch

    options: dict[str, Any] = {"request_timeout": timeout, "max_retries": 0, "retry_on_timeout": False}
    if config.uses_api_key:
        options["api_key"] = config.api_key
    elif config.uses_basic_auth:
        options["basic_auth"] = (config.username, config.password)
    if config.ca_certs:
        options["ca_certs"] = config.ca_certs
    return Elasticsearch(config.url, **options)


def ping(config: EsConfig) -> bool:
    """Whether the cluster answers. `GET /` is missing from the integ-test distribution,
    so ask for cluster health instead."""
    try:
        client(config, timeout=1.0).cluster.health()
        return True
    except Exception:
        return False
