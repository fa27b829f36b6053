# wwts — the two set-up commands are `make demo` and `make test` (see README.md).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export WWTS_CACHE ?= $(HOME)/.cache/wwts
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip
WWTS_ES_PORT ?= 9200
ES_URL := http://127.0.0.1:$(WWTS_ES_PORT)

.PHONY: demo test unit venv es-up es-down otelcol-up otelcol-down bench clean

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
test: $(STAMP) es-up otelcol-up
	WWTS_TEST_ES_URL=$${WWTS_ES_URL:-$(ES_URL)} WWTS_TEST_OTLP_ENDPOINT=$${WWTS_TEST_OTLP_ENDPOINT:-http://127.0.0.1:4317} \
		$(BIN)/python -m pytest

## unit: the suite without starting servers (integration tests then fail, by design)
unit: $(STAMP)
	$(BIN)/python -m pytest -m 'not integration'

es-up:
	@if [ -n "$$WWTS_ES_URL" ]; then echo "using WWTS_ES_URL=$$WWTS_ES_URL"; else WWTS_ES_PORT=$(WWTS_ES_PORT) deploy/elk/local/es.sh up; fi

es-down:
	WWTS_ES_PORT=$(WWTS_ES_PORT) deploy/elk/local/es.sh down

otelcol-up:
	WWTS_ES_URL=$${WWTS_ES_URL:-$(ES_URL)} deploy/elk/local/otelcol.sh up

otelcol-down:
	deploy/elk/local/otelcol.sh down

## bench: throughput, per-stage latency, telemetry on vs off vs the seed loop
bench: $(STAMP)
	$(BIN)/wwts bench

clean:
	rm -rf $(VENV) logs .pytest_cache
