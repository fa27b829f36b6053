"""Offline checks of the ELK assets: Kibana saved objects, index templates, ILM policy,
docker-compose stack. No servers: Kibana is not available here, so the saved objects are
checked against the formats Kibana 8/9 imports and against the index mappings, and every
KQL query is parsed and translated into its Elasticsearch twin."""

from __future__ import annotations

import fnmatch
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ELK = ROOT / "deploy" / "elk"
SAVED_OBJECTS = ELK / "kibana" / "saved-objects.ndjson"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

LOGS_VIEW, TRACES_VIEW, METRICS_VIEW = "wwts-logs", "wwts-traces", "wwts-metrics"
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
# Dynamic prefixes of the span documents (mapping mode none): attributes and resource keys.
TRACES_DYNAMIC_PREFIXES = ("Attributes.", "Resource.")
NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}
DATES = {"date", "date_nanos"}
STRINGS = {"keyword", "text", "wildcard", "constant_keyword"}

# The interface's KQL searches (README.md, "Log records").
CONTRACT_KQL = [
    'file.hash.md5 : "<md5>"',
    'wwts.top1.label : "虎斑猫"',
    "wwts.latency_ms.total > 1000",
    'event.outcome : "failure"',
    'event.dataset : "wwts.alert"',
    'trace.id : "<trace id>"',
]


# -- a small KQL parser (the subset Kibana users type: field : value, ranges, and/or/not) --

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op><=|>=|<|>|:)
      | (?P<paren>[()])
      | (?P<word>[^\s()<>:"]+)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not"}


class KQLError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise KQLError(f"cannot read {text[pos:]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = json.loads(value)
        elif kind == "word" and value.lower() in _KEYWORDS:
            kind = value.lower()
        out.append((kind, value))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (kind and token[0] != kind):
            raise KQLError(f"expected {kind or 'more'} at token {self.i}, got {token}")
        self.i += 1
        return token

    def parse(self) -> Any:
        if not self.tokens:
            return None
        node = self.or_expr()
        if self.peek() is not None:
            raise KQLError(f"unexpected {self.peek()}")
        return node

    def or_expr(self) -> Any:
        nodes = [self.and_expr()]
        while self.peek() and self.peek()[0] == "or":
            self.take()
            nodes.append(self.and_expr())
        return nodes[0] if len(nodes) == 1 else ("or", nodes)

    def and_expr(self) -> Any:
        nodes = [self.not_expr()]
        while self.peek() and self.peek()[0] == "and":
            self.take()
            nodes.append(self.not_expr())
        return nodes[0] if len(nodes) == 1 else ("and", nodes)

    def not_expr(self) -> Any:
        if self.peek() and self.peek()[0] == "not":
            self.take()
            return ("not", self.not_expr())
        return self.primary()

    def primary(self) -> Any:
        if self.peek() and self.peek()[0] == "paren" and self.peek()[1] == "(":
            self.take()
            node = self.or_expr()
            if self.take("paren")[1] != ")":
                raise KQLError("missing )")
            return node
        field = self.take("word")[1]
        op = self.take("op")[1]
        if op == ":":
            kind, value = self.take()
            if kind == "paren" and value == "(":  # field : (a or b)
                values = [self.take()[1]]
                while self.peek() and self.peek()[0] == "or":
                    self.take()
                    values.append(self.take()[1])
                if self.take("paren")[1] != ")":
                    raise KQLError("missing )")
                return ("or", [("match", field, v, True) for v in values])
            if kind not in ("string", "word"):
                raise KQLError(f"bad value {value!r} for {field}")
            if kind == "word" and value == "*":
                return ("exists", field)
            return ("match", field, value, kind == "string")
        kind, value = self.take()
        if kind not in ("string", "word"):
            raise KQLError(f"bad range value {value!r} for {field}")
        return ("range", field, op, value)


def parse_kql(text: str) -> Any:
    return _Parser(text).parse()


def kql_atoms(node: Any) -> list[tuple]:
    if node is None:
        return []
    if node[0] in ("and", "or"):
        return [atom for child in node[1] for atom in kql_atoms(child)]
    if node[0] == "not":
        return kql_atoms(node[1])
    return [node]


def kql_fields(text: str) -> set[str]:
    return {atom[1] for atom in kql_atoms(parse_kql(text))}


def kql_to_es(node: Any) -> dict[str, Any]:
    """The Elasticsearch twin of a KQL tree (what Kibana sends, in spirit)."""
    if node is None:
        return {"match_all": {}}
    kind = node[0]
    if kind == "and":
        return {"bool": {"filter": [kql_to_es(child) for child in node[1]]}}
    if kind == "or":
        return {"bool": {"should": [kql_to_es(child) for child in node[1]], "minimum_should_match": 1}}
    if kind == "not":
        return {"bool": {"must_not": [kql_to_es(node[1])]}}
    if kind == "exists":
        return {"exists": {"field": node[1]}}
    if kind == "match":
        _, field, value, quoted = node
        return {"match_phrase": {field: value}} if quoted else {"match": {field: value}}
    _, field, op, value = node
    number = float(value) if re.fullmatch(r"-?\d+(\.\d+)?", value) else value
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    return {"range": {field: {{">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}[op]: number}}}


def _normal_atom(atom: tuple) -> tuple:
    """Placeholders such as "<md5>" or "<trace id>" compare equal to each other."""
    if atom[0] == "match":
        value = "<placeholder>" if atom[2].startswith("<") and atom[2].endswith(">") else atom[2]
        return ("match", atom[1], value)
    return atom


def backticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text or "")


def description_kql(text: str) -> list[str]:
    """KQL snippets quoted in a description: `and file.hash.md5 : "<md5>"` → the clause."""
    snippets = []
    for snippet in backticked(text):
        snippet = re.sub(r"^\s*(and|or)\s+", "", snippet)
        try:
            node = parse_kql(snippet)
        except KQLError:
            continue  # prose in backticks (a command, an env var), not a query
        if node is not None and kql_atoms(node):
            snippets.append(snippet)
    return snippets


# -- mappings -----------------------------------------------------------------------------


def _walk(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            fields[path] = spec.get("type", "object")
            fields.update(_walk(spec["properties"], path + "."))
        else:
            fields[path] = spec.get("type", "object")
        for sub, sub_spec in spec.get("fields", {}).items():
            fields[f"{path}.{sub}"] = sub_spec.get("type", "keyword")
    return fields


@cache
def logs_template() -> dict[str, Any]:
    return json.loads((ELK / "index-template.json").read_text(encoding="utf-8"))


@cache
def traces_template() -> dict[str, Any]:
    return json.loads((ELK / "traces-template.json").read_text(encoding="utf-8"))


@cache
def metrics_template() -> dict[str, Any]:
    return json.loads((ELK / "metrics-template.json").read_text(encoding="utf-8"))


@cache
def mapped_fields(view: str) -> dict[str, str]:
    template = {LOGS_VIEW: logs_template, METRICS_VIEW: metrics_template}.get(view, traces_template)()
    return _walk(template["template"]["mappings"]["properties"])


def field_type(view: str, field: str) -> str | None:
    """The mapped leaf type, "dynamic" for documented dynamic span fields, else None."""
    fields = mapped_fields(view)
    if field in fields:
        return fields[field]
    if view == TRACES_VIEW and field.startswith(TRACES_DYNAMIC_PREFIXES) and len(field.split(".")) > 1:
        return "dynamic"
    return None


def assert_leaf_field(view: str, field: str, where: str) -> str:
    kind = field_type(view, field)
    assert kind is not None, f"{where}: field {field!r} is not in the {view} mappings"
    assert kind != "object", f"{where}: {field!r} is an object, not a field"
    return kind


def assert_kql_ok(view: str, text: str, where: str) -> None:
    try:
        node = parse_kql(text)
    except KQLError as exc:
        pytest.fail(f"{where}: KQL {text!r} does not parse: {exc}")
    for atom in kql_atoms(node):
        kind = assert_leaf_field(view, atom[1], where)
        if atom[0] == "range":
            assert kind in NUMERIC | DATES | {"dynamic"}, f"{where}: range on {atom[1]} ({kind})"
            if kind in NUMERIC:
                float(atom[3])  # a number, not "1s"


# -- the saved objects --------------------------------------------------------------------


@cache
def saved_objects() -> tuple[dict[str, Any], ...]:
    lines = SAVED_OBJECTS.read_text(encoding="utf-8").splitlines()
    assert lines, "saved-objects.ndjson is empty"
    objects = []
    for number, line in enumerate(lines, 1):
        assert line.strip(), f"line {number} is blank (the import API rejects blank lines)"
        obj = json.loads(line)
        assert isinstance(obj, dict), f"line {number} is not a JSON object"
        objects.append(obj)
    return tuple(objects)


def of_type(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in saved_objects() if obj["type"] == kind]


def by_title(kind: str) -> dict[str, dict[str, Any]]:
    return {obj["attributes"]["title"]: obj for obj in of_type(kind)}


def view_of(obj: dict[str, Any], ref_name: str) -> str:
    refs = [ref for ref in obj["references"] if ref["name"] == ref_name]
    assert len(refs) == 1, f"{obj['id']}: expected one reference named {ref_name!r}"
    assert refs[0]["type"] == "index-pattern"
    return refs[0]["id"]


def test_every_line_is_an_importable_saved_object() -> None:
    semver = re.compile(r"^\d+\.\d+\.\d+$")
    for obj in saved_objects():
        assert set(obj) >= {"id", "type", "attributes", "references"}, obj.get("id")
        assert obj["type"] in {"index-pattern", "search", "lens", "visualization", "dashboard"}
        assert isinstance(obj["id"], str) and re.fullmatch(r"[a-z0-9][a-z0-9-]*", obj["id"])
        assert isinstance(obj["attributes"].get("title"), str) and obj["attributes"]["title"]
        # Explicit versions, so Kibana runs exactly the migrations meant for this format.
        assert semver.match(obj["typeMigrationVersion"]), obj["id"]
        assert semver.match(obj["coreMigrationVersion"]), obj["id"]
        for ref in obj["references"]:
            assert set(ref) == {"id", "name", "type"}, (obj["id"], ref)


def test_ids_are_unique() -> None:
    ids = [obj["id"] for obj in saved_objects()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_reference_resolves_inside_the_file() -> None:
    present = {(obj["type"], obj["id"]) for obj in saved_objects()}
    for obj in saved_objects():
        names = [ref["name"] for ref in obj["references"]]
        assert len(names) == len(set(names)), f"{obj['id']}: duplicate reference names"
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in present, f"{obj['id']} → missing {ref['type']}/{ref['id']}"


def test_data_views() -> None:
    views = {obj["id"]: obj["attributes"] for obj in of_type("index-pattern")}
    assert views[LOGS_VIEW]["title"] == "wwts-logs-*"
    assert views[LOGS_VIEW]["name"] == "wwts logs"
    assert views[TRACES_VIEW]["title"] == "wwts-traces*"
    assert views[TRACES_VIEW]["name"] == "wwts traces"
    assert views[METRICS_VIEW]["title"] == "wwts-metrics*"
    assert views[METRICS_VIEW]["name"] == "wwts metrics"
    for view_id, attributes in views.items():
        assert attributes["timeFieldName"] == "@timestamp"
        assert field_type(view_id, "@timestamp") in DATES
        for key in ("fieldFormatMap", "fieldAttrs", "runtimeFieldMap", "sourceFilters"):
            if key in attributes:
                json.loads(attributes[key])
        for field in json.loads(attributes.get("fieldFormatMap", "{}")):
            assert_leaf_field(view_id, field, f"{view_id} fieldFormatMap")
    # The data view patterns and the index templates cover the same indices.
    assert fnmatch.fnmatch("wwts-logs-2026.11.25", views[LOGS_VIEW]["title"])
    assert any(fnmatch.fnmatch("wwts-logs-2026.11.25", p) for p in logs_template()["index_patterns"])
    assert fnmatch.fnmatch("wwts-traces", views[TRACES_VIEW]["title"])
    assert any(fnmatch.fnmatch("wwts-traces", p) for p in traces_template()["index_patterns"])
    assert fnmatch.fnmatch("wwts-metrics", views[METRICS_VIEW]["title"])
    assert any(fnmatch.fnmatch("wwts-metrics", p) for p in metrics_template()["index_patterns"])


def test_saved_searches_are_valid_for_their_data_view() -> None:
    searches = of_type("search")
    assert searches
    for obj in searches:
        attributes, where = obj["attributes"], f"search {obj['attributes']['title']!r}"
        source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["indexRefName"] == INDEX_REF
        assert "index" not in source, "the data view goes in references, not inline"
        assert source["filter"] == []
        assert source["query"]["language"] == "kuery"
        view = view_of(obj, INDEX_REF)
        assert view in (LOGS_VIEW, TRACES_VIEW)
        assert_kql_ok(view, source["query"]["query"], where)
        assert attributes["columns"], where
        for column in attributes["columns"]:
            assert_leaf_field(view, column, where)
        assert attributes["sort"], where
        for field, direction in attributes["sort"]:
            assert_leaf_field(view, field, where)
            assert direction in ("asc", "desc")
        # Every query template a description offers is valid KQL on existing fields, too.
        for snippet in description_kql(attributes.get("description", "")):
            assert_kql_ok(view, snippet, f"{where} description")


EXPECTED_SEARCHES = {
    # title: (data view, query, columns)
    "wwts: by image hash": (
        LOGS_VIEW,
        'event.dataset : "wwts.inference"',
        ["file.hash.md5", "file.name", "wwts.top1.label", "wwts.top1.score", "wwts.latency_ms.total", "trace.id"],
    ),
    "wwts: by label": (
        LOGS_VIEW,
        None,
        ["wwts.top1.label", "wwts.labels.label", "file.name", "wwts.top1.score", "trace.id"],
    ),
    "wwts: slow (> 1 s)": (LOGS_VIEW, "wwts.latency_ms.total > 1000", None),
    "wwts: failures": (
        LOGS_VIEW,
        'event.outcome : "failure"',
        ["file.path", "error.type", "error.message", "trace.id"],
    ),
    "wwts: alerts": (
        LOGS_VIEW,
        'event.dataset : "wwts.alert"',
        ["message", "wwts.alert.metric", "wwts.alert.value", "wwts.alert.threshold", "trace.id"],
    ),
    "wwts: spans of a trace": (
        TRACES_VIEW,
        None,
        ["Name", "Duration", "TraceStatus", "Attributes.wwts.input", "Attributes.wwts.top1.label",
         "SpanId", "ParentSpanId", "TraceId"],
    ),
}


@pytest.mark.parametrize("title", sorted(EXPECTED_SEARCHES))
def test_expected_saved_search(title: str) -> None:
    searches = by_title("search")
    assert title in searches, f"missing saved search {title!r}; have {sorted(searches)}"
    obj = searches[title]
    view, query, columns = EXPECTED_SEARCHES[title]
    assert view_of(obj, INDEX_REF) == view
    source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    if query is not None:
        assert source["query"]["query"] == query
    if columns is not None:
        assert obj["attributes"]["columns"] == columns


def test_slow_search_shows_every_latency_stage() -> None:
    columns = by_title("search")["wwts: slow (> 1 s)"]["attributes"]["columns"]
    for stage in ("load", "preprocess", "forward", "postprocess", "total"):
        assert f"wwts.latency_ms.{stage}" in columns


def test_span_search_explains_the_link_from_a_log_record() -> None:
    description = by_title("search")["wwts: spans of a trace"]["attributes"]["description"]
    snippets = [parse_kql(s) for s in description_kql(description)]
    assert ("match", "TraceId", "<trace.id from a log record>", True) in [
        atom for node in snippets for atom in kql_atoms(node)
    ]


@pytest.mark.parametrize("kql", CONTRACT_KQL)
def test_contract_search_is_covered_by_a_saved_search(kql: str) -> None:
    """Each contract search is a saved query or a template in a description (logs view)."""
    wanted = {_normal_atom(atom) for atom in kql_atoms(parse_kql(kql))}
    offered: set[tuple] = set()
    for obj in of_type("search"):
        if view_of(obj, INDEX_REF) != LOGS_VIEW:
            continue
        source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        texts = [source["query"]["query"], *description_kql(obj["attributes"].get("description", ""))]
        for text in texts:
            offered |= {_normal_atom(atom) for atom in kql_atoms(parse_kql(text))}
    assert wanted <= offered, f"{kql!r} is in no saved search on {LOGS_VIEW}"


def test_contract_kql_twins() -> None:
    """What the contract's searches mean in Elasticsearch terms, on the mapped field types."""
    assert kql_to_es(parse_kql(CONTRACT_KQL[2])) == {"range": {"wwts.latency_ms.total": {"gt": 1000}}}
    assert kql_to_es(parse_kql(CONTRACT_KQL[3])) == {"match_phrase": {"event.outcome": "failure"}}
    assert kql_to_es(parse_kql('trace.id : * and not event.outcome : "failure"')) == {
        "bool": {"filter": [{"exists": {"field": "trace.id"}},
                            {"bool": {"must_not": [{"match_phrase": {"event.outcome": "failure"}}]}}]}
    }
    for kql in CONTRACT_KQL:
        assert_kql_ok(LOGS_VIEW, kql, "contract")
    # exact-value searches need keyword fields (a text field would match word by word)
    for field in ("file.hash.md5", "wwts.top1.label", "event.outcome", "event.dataset", "trace.id"):
        assert field_type(LOGS_VIEW, field) == "keyword"


def test_kql_parser_rejects_what_kibana_rejects() -> None:
    for bad in ('file.hash.md5 : "abc', "wwts.latency_ms.total >", "(a : b", "a : b and"):
        with pytest.raises(KQLError):
            parse_kql(bad)


# -- Lens and legacy visualizations --------------------------------------------------------

_OPERATION_TYPES = {
    "date_histogram": DATES,
    "average": NUMERIC, "sum": NUMERIC, "min": NUMERIC, "max": NUMERIC, "median": NUMERIC,
    "percentile": NUMERIC | {"histogram"}, "standard_deviation": NUMERIC,
    "terms": STRINGS | NUMERIC,
    "unique_count": STRINGS | NUMERIC,
}


def test_lens_objects() -> None:
    for obj in of_type("lens"):
        attributes, where = obj["attributes"], f"lens {obj['attributes']['title']!r}"
        assert attributes["visualizationType"] in {"lnsXY", "lnsDatatable", "lnsMetric", "lnsPie"}
        state = attributes["state"]
        layers = state["datasourceStates"]["formBased"]["layers"]
        assert layers, where
        all_columns: set[str] = set()
        for layer_id, layer in layers.items():
            view = view_of(obj, f"indexpattern-datasource-layer-{layer_id}")
            assert sorted(layer["columnOrder"]) == sorted(layer["columns"]), where
            for column_id, column in layer["columns"].items():
                operation = column["operationType"]
                if operation == "count":
                    assert column["sourceField"] == "___records___"
                else:
                    kind = assert_leaf_field(view, column["sourceField"], f"{where} column {column_id}")
                    assert kind in _OPERATION_TYPES[operation], f"{where}: {operation} on {kind}"
                if operation == "terms":
                    order = column["params"]["orderBy"]
                    assert order["type"] != "column" or order["columnId"] in layer["columns"]
                all_columns.add(column_id)
            assert_kql_ok(view, state["query"]["query"], where)
            assert state["query"]["language"] == "kuery"
        visualization = state["visualization"]
        accessors: list[str] = []
        if attributes["visualizationType"] == "lnsXY":
            for layer in visualization["layers"]:
                assert layer["layerId"] in layers
                accessors += [layer["xAccessor"], *layer["accessors"]]
        elif attributes["visualizationType"] == "lnsDatatable":
            assert visualization["layerId"] in layers
            accessors += [column["columnId"] for column in visualization["columns"]]
        elif attributes["visualizationType"] == "lnsMetric":
            assert visualization["layerId"] in layers
            accessors.append(visualization["metricAccessor"])
        assert accessors and set(accessors) <= all_columns, where


def test_legacy_visualizations_if_any() -> None:
    for obj in of_type("visualization"):
        where = f"visualization {obj['attributes']['title']!r}"
        vis_state = json.loads(obj["attributes"]["visState"])
        source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        view = view_of(obj, source["indexRefName"])
        assert_kql_ok(view, source["query"]["query"], where)
        for agg in vis_state.get("aggs", []):
            if "field" in agg.get("params", {}):
                assert_leaf_field(view, agg["params"]["field"], where)


# -- the dashboard ------------------------------------------------------------------------

DASHBOARD_ATTRIBUTES = {  # the dashboard saved-object schema forbids anything else
    "title", "description", "kibanaSavedObjectMeta", "timeRestore", "timeFrom", "timeTo",
    "refreshInterval", "controlGroupInput", "panelsJSON", "optionsJSON", "hits", "version",
}


def test_overview_dashboard() -> None:
    dashboards = by_title("dashboard")
    assert "wwts overview" in dashboards
    objects = {(obj["type"], obj["id"]): obj for obj in saved_objects()}
    for dashboard in dashboards.values():
        attributes = dashboard["attributes"]
        assert set(attributes) <= DASHBOARD_ATTRIBUTES, set(attributes) - DASHBOARD_ATTRIBUTES
        json.loads(attributes["optionsJSON"])
        source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["query"]["language"] == "kuery"
        panels = json.loads(attributes["panelsJSON"])
        assert panels
        refs = {ref["name"]: ref for ref in dashboard["references"]}
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            grid = panel["gridData"]
            assert grid["i"] == panel["panelIndex"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 48 and grid["h"] > 0
            area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                    for y in range(grid["y"], grid["y"] + grid["h"])}
            assert not area & cells, f"panel {panel['panelIndex']} overlaps another"
            cells |= area
            # by reference: "<panelIndex>:<panelRefName>" → the saved object
            ref = refs[f"{panel['panelIndex']}:{panel['panelRefName']}"]
            assert ref["type"] == panel["type"]
            assert (ref["type"], ref["id"]) in objects
        shown = [objects[(ref["type"], ref["id"])] for ref in refs.values()]
        if dashboard["attributes"]["title"] == "wwts overview":
            sources = {
                column.get("sourceField")
                for obj in shown if obj["type"] == "lens"
                for layer in obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values()
                for column in layer["columns"].values()
            }
            queries = {obj["attributes"]["state"]["query"]["query"] for obj in shown if obj["type"] == "lens"}
            assert "wwts.latency_ms.total" in sources, "latency over time"
            # the metrics panels: requests/s and error rate, stage percentiles, GPU temperature
            assert {"metrics.wwts.images", "metrics.wwts.stage.duration", "metrics.hw.temperature"} <= sources
            assert "wwts.top1.label" in sources, "top labels"
            assert any('event.outcome : "failure"' in q for q in queries), "failure count"


# -- templates and lifecycle --------------------------------------------------------------


def test_log_index_template_and_ilm_policy() -> None:
    """The JSON and YAML copies of names and defaults hold to their one Python home."""
    from telemetry.daily import DEFAULT_KEEP_DAYS
    from telemetry.names import LOGS_INDEX_PATTERN, LOGS_INDEX_PREFIX, TRACES_INDEX

    template = logs_template()
    assert template["index_patterns"] == [LOGS_INDEX_PATTERN]
    assert fnmatch.fnmatch(f"{LOGS_INDEX_PREFIX}2026.11.25", template["index_patterns"][0])
    assert not fnmatch.fnmatch(TRACES_INDEX, template["index_patterns"][0])
    assert mapped_fields(LOGS_VIEW)["@timestamp"] == "date"
    policy = json.loads((ELK / "ilm-policy.json").read_text(encoding="utf-8"))["policy"]
    delete = policy["phases"]["delete"]
    assert delete["min_age"] == f"{DEFAULT_KEEP_DAYS}d"
    assert "delete" in delete["actions"]


def test_traces_template_matches_the_collector_index() -> None:
    from telemetry.names import TRACES_INDEX

    template = traces_template()
    assert any(fnmatch.fnmatch(TRACES_INDEX, p) for p in template["index_patterns"])
    fields = mapped_fields(TRACES_VIEW)
    for name in ("TraceId", "SpanId", "ParentSpanId", "Name"):
        assert fields[name] == "keyword"
    assert fields["@timestamp"] in DATES and fields["Duration"] == "long"
    config = (ELK / "otel-collector" / "config.yaml").read_text(encoding="utf-8")
    [index] = re.findall(r"traces_index:\s*(\S+)", config)
    assert re.sub(r"\$\{env:\w+:-([^}]*)\}", r"\1", index) == TRACES_INDEX  # a default for an env override, or literal


def test_metrics_template_matches_the_collector_data_stream() -> None:
    """Metric points need mapping mode otel (none/raw encode none), which writes with
    require_data_stream: the template makes `wwts-metrics` a data stream, and it maps every
    by-name dynamic template the exporter sends and every wwts metric explicitly."""
    from telemetry import metrics
    from telemetry.names import METRICS_INDEX, METRICS_INDEX_PATTERN

    template = metrics_template()
    assert template["index_patterns"] == [METRICS_INDEX_PATTERN] and "data_stream" in template
    by_name = {name for entry in template["template"]["mappings"]["dynamic_templates"] for name in entry}
    assert {"histogram", "summary", "gauge_double", "gauge_long", "counter_double", "counter_long"} <= by_name
    fields = mapped_fields(METRICS_VIEW)
    assert fields["@timestamp"] in DATES
    for name in (metrics.STAGE_DURATION, metrics.BATCH_SIZE, metrics.HTTP_SERVER_DURATION):
        assert fields[f"metrics.{name}"] == "histogram", name
    for name in (metrics.IMAGES, metrics.QUEUE_DEPTH, metrics.PROCESS_CPU_UTILIZATION, metrics.PROCESS_MEMORY_USAGE,
                 metrics.GPU_TEMPERATURE, metrics.GPU_MEMORY_USAGE):
        assert fields[f"metrics.{name}"] in NUMERIC, name
    for name in (metrics.STAGE, metrics.MODEL, metrics.RUNTIME, metrics.OUTCOME, metrics.ERROR_TYPE):
        assert fields[f"attributes.{name}"] == "keyword", name
    config = yaml.safe_load((ELK / "otel-collector" / "config.yaml").read_text(encoding="utf-8"))
    exporter = config["exporters"]["elasticsearch/metrics"]
    assert exporter["metrics_index"] == METRICS_INDEX and exporter["mapping"]["allowed_modes"] == ["otel"]
    assert "elasticsearch/metrics" in config["service"]["pipelines"]["metrics"]["exporters"]


def test_without_histograms_keeps_counts_and_values() -> None:
    from wwts.elk_cli import HISTOGRAM_ARRAYS, without_histograms

    portable = without_histograms(metrics_template())
    fields = _walk(portable["template"]["mappings"]["properties"])
    assert "histogram" not in fields.values()
    assert fields["metrics.wwts.stage.duration.counts"] == "long"
    assert fields["metrics.wwts.stage.duration.values"] == "double"
    assert portable["template"]["mappings"]["dynamic_templates"][0]["histogram"]["mapping"] == HISTOGRAM_ARRAYS


def test_collector_samples_the_tail_of_every_trace_pipeline() -> None:
    """Errors, slow traces and a share of the rest; defaults for the local run in the config,
    production's 10 % in docker-compose."""
    config = yaml.safe_load((ELK / "otel-collector" / "config.yaml").read_text(encoding="utf-8"))
    policies = {p["type"]: p for p in config["processors"]["tail_sampling"]["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["latency"]["latency"]["threshold_ms"] == "${env:WWTS_SAMPLING_SLOW_MS:-1000}"
    assert policies["probabilistic"]["probabilistic"]["sampling_percentage"] == "${env:WWTS_SAMPLING_PERCENTAGE:-100}"
    jaeger = yaml.safe_load((ELK / "otel-collector" / "config.jaeger.yaml").read_text(encoding="utf-8"))
    for pipelines in (config["service"]["pipelines"], jaeger["service"]["pipelines"]):
        for name, pipeline in pipelines.items():
            if name.startswith("traces"):
                assert "tail_sampling" in pipeline["processors"], name
    assert environment("otel-collector")["WWTS_SAMPLING_PERCENTAGE"] == "10"


# -- docker-compose -----------------------------------------------------------------------

SECRET_NAME = re.compile(r"PASSWORD|API_KEY|SECRET|TOKEN", re.IGNORECASE)
COMPOSE_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def yaml_strings(node: Any) -> list[str]:
    """Every string value in a parsed YAML document (comments are gone by then)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for value in node.values() for text in yaml_strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in yaml_strings(value)]
    return []


def environment(service: str) -> dict[str, str]:
    env = compose()["services"][service].get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def test_compose_services_and_images() -> None:
    services = compose()["services"]
    assert {"elasticsearch", "kibana", "setup", "wwts-setup", "otel-collector", "jaeger"} <= set(services)
    es_image = services["elasticsearch"]["image"]
    kibana_image = services["kibana"]["image"]
    assert es_image == "docker.elastic.co/elasticsearch/elasticsearch:9.5.4"
    assert kibana_image == "docker.elastic.co/kibana/kibana:9.5.4"
    # Server major == Python client major (a 9.x client is refused by an 8.x server).
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    client_major = re.search(r'"elasticsearch>=(\d+)', pyproject).group(1)
    assert es_image.rsplit(":", 1)[1].split(".")[0] == client_major
    assert services["otel-collector"]["image"] == "otel/opentelemetry-collector-contrib:0.159.0"
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")


def test_compose_ports_are_loopback_only() -> None:
    published = 0
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", (name, port)
            else:
                assert str(port).startswith("127.0.0.1:"), (name, port)
    assert published >= 6  # 9200, 5601, 4317, 4318, 13133, 16686


def test_compose_has_no_literal_secrets() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for name in compose()["services"]:
        for key, value in environment(name).items():
            if SECRET_NAME.search(key):
                assert value == "" or re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*(:?[?-][^}]*)?\}", value), (
                    f"{name}: {key} must come from .env as ${{...}}, not a literal"
                )
    # curl -u elastic:<literal> and similar
    for match in re.finditer(r"elastic:([^\s\"']+)", text):
        assert match.group(1).startswith("$"), match.group(0)
    # none of the placeholder values of .env.example leaked into the compose file
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            value = line.split("=", 1)[1].strip()
            assert value and value not in text


def test_env_example_defines_every_compose_variable_and_env_is_ignored() -> None:
    defined = {
        line.split("=", 1)[0].strip()
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    used = {name for text in yaml_strings(compose()) for name in COMPOSE_REF.findall(text)}
    assert {"ELASTIC_PASSWORD", "KIBANA_PASSWORD"} <= used
    assert used <= defined, used - defined
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in [line.strip() for line in ignored]


def test_compose_elasticsearch_and_kibana() -> None:
    services = compose()["services"]
    es = environment("elasticsearch")
    assert es["xpack.security.enabled"] == "true"
    assert es["discovery.type"] == "single-node"
    assert "-Xms1g" in es["ES_JAVA_OPTS"] and "-Xmx1g" in es["ES_JAVA_OPTS"]
    assert es["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD")
    for name in ("elasticsearch", "kibana"):
        assert services[name]["healthcheck"]["test"], name
    kibana = environment("kibana")
    assert kibana["ELASTICSEARCH_USERNAME"] == "kibana_system"
    assert kibana["ELASTICSEARCH_PASSWORD"].startswith("${KIBANA_PASSWORD")
    setup = services["setup"]
    assert setup["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    assert "kibana_system/_password" in " ".join(setup["command"])
    assert services["kibana"]["depends_on"]["setup"]["condition"] == "service_completed_successfully"


def test_compose_wwts_setup() -> None:
    service = compose()["services"]["wwts-setup"]
    build = service["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = ROOT / context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
    assert dockerfile.is_file()
    text = dockerfile.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert "pip install -e" not in text and re.search(r"pip install \S*\.whl", text)  # a wheel, as users get it
    copied = set(re.findall(r"^COPY (\w+) ", text, re.MULTILINE))
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packaged = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packaged <= copied, packaged - copied  # every package the wheel carries is in the build stage
    command = service["command"]
    command = command if isinstance(command, list) else command.split()
    assert command[:3] == ["wwts", "elk", "setup"]
    assert command[command.index("--kibana-url") + 1] == "http://kibana:5601"
    env = environment("wwts-setup")
    assert env["WWTS_ES_URL"] == "http://elasticsearch:9200"
    assert env["WWTS_ES_USERNAME"] == "elastic"
    assert env["WWTS_ES_PASSWORD"].startswith("${ELASTIC_PASSWORD")
    assert service["depends_on"]["kibana"]["condition"] == "service_healthy"
    assert service["depends_on"]["elasticsearch"]["condition"] == "service_healthy"


def test_compose_collector_uses_the_repository_config() -> None:
    service = compose()["services"]["otel-collector"]
    mounts = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
        if source.startswith("."):
            assert (ROOT / source).is_file(), f"{source} does not exist"
    configs = [arg.split("=", 1)[1] for arg in service["command"] if arg.startswith("--config=")]
    assert [Path(mounts[c]).name for c in configs] == ["config.yaml", "config.jaeger.yaml"]
    read = set()
    for config in configs:
        parsed = yaml.safe_load((ROOT / mounts[config]).read_text(encoding="utf-8"))
        read |= {name for text in yaml_strings(parsed) for name in re.findall(r"\$\{env:([A-Z0-9_]+)", text)}
    env = environment("otel-collector")
    optional = {"WWTS_ES_API_KEY"}  # empty default = not used; the stack uses basic auth
    assert read - optional <= set(env), (read - optional) - set(env)
    assert env["WWTS_OTLP_GRPC_ENDPOINT"] == "0.0.0.0:4317"
    assert env["WWTS_OTLP_HTTP_ENDPOINT"] == "0.0.0.0:4318"
    assert env["WWTS_ES_URL"] == "http://elasticsearch:9200"
    assert env["WWTS_JAEGER_OTLP_ENDPOINT"].split(":")[0] == "jaeger"
    assert env["WWTS_ES_PASSWORD"].startswith("${ELASTIC_PASSWORD")
    # the file exporter writes into a mounted volume, not the read-only image root
    assert any(env["WWTS_OTELCOL_FILE"].startswith(target + "/") for target in mounts)
