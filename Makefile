# wwts — the two set-up commands are `make demo` and `make test` (see README.md).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export WWTS_CACHE ?= $(HOME)/.cache/wwts
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip
# the local servers (deploy/servers.py: standard library only, so it runs before the venv);
# their knobs are environment variables (deploy/elk/local/README.md), e.g. WWTS_ES_PORT=9250
SERVERS := $(PYTHON) -m deploy.servers
BUILD_LOG := $(WWTS_CACHE)/servers-build.log

.PHONY: demo test unit venv servers-build servers-build-bg es-up es-down es-secure-up es-secure-down otelcol-up otelcol-down \
	jaeger-up jaeger-down bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(STAMP)

## demo: fresh machine → venv, install, classify the sample photo (local logs and trace, no servers)
demo: $(STAMP)
	$(BIN)/wwts classify examples/cat.png --log-dir logs
	@echo
	@echo "log records: $$(ls logs/wwts-*.jsonl)"
	@echo "trace:       $$(ls logs/traces-*.jsonl)"

## test: fresh machine → venv, then the whole suite, whose session fixtures start (or reuse)
## the local Elasticsearch nodes, collector and Jaeger (tests/backends.py)
test: servers-build-bg $(STAMP)
	$(BIN)/python -m pytest

# The distribution download and the Go builds, in the background while the venv installs
# (log: $(BUILD_LOG)); a fixture that needs one of them waits for it on its lock.
servers-build-bg:
	@mkdir -p "$(WWTS_CACHE)"; $(SERVERS) build all >"$(BUILD_LOG)" 2>&1 </dev/null &

## unit: the suite without the integration tests (deselected, so no server is started)
unit: $(STAMP)
	$(BIN)/python -m pytest -m 'not integration'

## servers-build: download Elasticsearch, build the collector and Jaeger; start nothing
servers-build:
	$(SERVERS) build all

es-up:
	$(SERVERS) up es

es-down:
	$(SERVERS) down es

## es-secure-up: the security-on node (file-realm users; see deploy/elk/local/README.md)
es-secure-up:
	$(SERVERS) up es-secure

es-secure-down:
	$(SERVERS) down es-secure

## otelcol-up: the collector, exporting into WWTS_ES_URL (default: the es-up node)
otelcol-up:
	$(SERVERS) up collector

otelcol-down:
	$(SERVERS) down collector

jaeger-up:
	$(SERVERS) up jaeger

jaeger-down:
	$(SERVERS) down jaeger

## bench: throughput, per-stage latency, telemetry on vs off vs the seed loop
bench: $(STAMP)
	$(BIN)/wwts bench

clean:
	rm -rf $(VENV) logs .pytest_cache
