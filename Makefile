# wwts — the two set-up commands are `make demo` and `make test` (see README.md).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export WWTS_CACHE ?= $(HOME)/.cache/wwts
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip
WWTS_ES_PORT ?= 9200
ES_URL := http://127.0.0.1:$(WWTS_ES_PORT)
# a second node with security on, for the 401/403 tests (tests/test_es_auth.py)
WWTS_ES_SECURE_PORT ?= 9210
WWTS_ES_SECURE_USER ?= wwts-test
WWTS_ES_SECURE_PASSWORD ?= wwts-test-password
WWTS_ES_NOPRIV_USER ?= wwts-nopriv
WWTS_ES_NOPRIV_PASSWORD ?= wwts-nopriv-password
ES_SECURE_URL := http://127.0.0.1:$(WWTS_ES_SECURE_PORT)
ES_SECURE_ENV := WWTS_ES_PORT=$(WWTS_ES_SECURE_PORT) WWTS_ES_SECURITY=true \
	WWTS_ES_SECURE_USER='$(WWTS_ES_SECURE_USER)' WWTS_ES_SECURE_PASSWORD='$(WWTS_ES_SECURE_PASSWORD)' \
	WWTS_ES_NOPRIV_USER='$(WWTS_ES_NOPRIV_USER)' WWTS_ES_NOPRIV_PASSWORD='$(WWTS_ES_NOPRIV_PASSWORD)'

.PHONY: demo test unit venv es-up es-down es-secure-up es-secure-down otelcol-up otelcol-down bench clean

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

## test: fresh machine → venv, local Elasticsearch and collector, then the whole suite
test: $(STAMP) es-up es-secure-up otelcol-up
	WWTS_TEST_ES_URL=$${WWTS_ES_URL:-$(ES_URL)} WWTS_TEST_OTLP_ENDPOINT=$${WWTS_TEST_OTLP_ENDPOINT:-http://127.0.0.1:4317} \
		WWTS_TEST_ES_SECURE_URL=$${WWTS_TEST_ES_SECURE_URL:-$(ES_SECURE_URL)} \
		WWTS_TEST_ES_SECURE_USER='$(WWTS_ES_SECURE_USER)' WWTS_TEST_ES_SECURE_PASSWORD='$(WWTS_ES_SECURE_PASSWORD)' \
		WWTS_TEST_ES_NOPRIV_USER='$(WWTS_ES_NOPRIV_USER)' WWTS_TEST_ES_NOPRIV_PASSWORD='$(WWTS_ES_NOPRIV_PASSWORD)' \
		$(BIN)/python -m pytest

## unit: the suite without starting servers (integration tests then fail, by design)
unit: $(STAMP)
	$(BIN)/python -m pytest -m 'not integration'

es-up:
	@if [ -n "$$WWTS_ES_URL" ]; then echo "using WWTS_ES_URL=$$WWTS_ES_URL"; else WWTS_ES_PORT=$(WWTS_ES_PORT) deploy/elk/local/es.sh up; fi

es-down:
	WWTS_ES_PORT=$(WWTS_ES_PORT) deploy/elk/local/es.sh down

## es-secure-up: the security-on node (file-realm users; see deploy/elk/local/README.md)
es-secure-up:
	@if [ -n "$$WWTS_TEST_ES_SECURE_URL" ]; then echo "using WWTS_TEST_ES_SECURE_URL=$$WWTS_TEST_ES_SECURE_URL"; else $(ES_SECURE_ENV) deploy/elk/local/es.sh up; fi

es-secure-down:
	WWTS_ES_PORT=$(WWTS_ES_SECURE_PORT) deploy/elk/local/es.sh down

otelcol-up:
	WWTS_ES_URL=$${WWTS_ES_URL:-$(ES_URL)} deploy/elk/local/otelcol.sh up

otelcol-down:
	deploy/elk/local/otelcol.sh down

## bench: throughput, per-stage latency, telemetry on vs off vs the seed loop
bench: $(STAMP)
	$(BIN)/wwts bench

clean:
	rm -rf $(VENV) logs .pytest_cache
