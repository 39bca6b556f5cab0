"""The monitoring component: ServiceMonitor, PrometheusRule and Grafana dashboard.

Rendered through deploy/k8s/overlays/prod-monitoring (prod plus the component)
and checked offline: the Prometheus Operator kinds against the CRD schemas
vendored in deploy/k8s/schemas (kubernetes-validate has none), everything else
with kubernetes-validate; every alert expression and dashboard query parses as
PromQL; and every metric they name is one a real server exports, read from a
live /metrics scrape.
"""

from __future__ import annotations

import copy
import json
import re
import signal
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.servers import ServerProcess, free_port, start_server
from oriserver._generated import mathhelper_pb2 as mh
from oriserver._generated import mathhelper_pb2_grpc as mh_grpc
from oriserver._generated.ori.events.v1 import events_pb2 as ev
from oriserver._generated.ori.events.v1 import events_pb2_grpc as ev_grpc
from oriserver.config import load_settings
from tests.delivery.crds import crd_problems, is_crd_kind
from tests.delivery.test_docs_links import relative_links
from tests.delivery.tools import (
    OVERLAY_DIR,
    ROOT,
    by_kind,
    container,
    effective_env,
    labels_match,
    on_this_machine,
    one,
    render_overlay,
    schema_problems,
    seconds,
)
from tests.support.webhook_server import webhook_receiver

Docs = list[dict[str, Any]]

OVERLAY = OVERLAY_DIR / "prod-monitoring"
COMPONENT = ROOT / "deploy" / "k8s" / "components" / "monitoring"
DASHBOARD = COMPONENT / "dashboards" / "oriserver.json"
SCHEMAS = ROOT / "deploy" / "k8s" / "schemas"
OPERATING = ROOT / "docs" / "operating.md"
RUNBOOK = "https://github.com/example/oriserver/blob/main/docs/operating.md#"

# Every metric family the server exports (docs/operating.md describes each one).
HISTOGRAMS = {
    "ori_rpc_duration_seconds",
    "ori_events_flush_duration_seconds",
    "ori_events_batch_size",
}
EXPORTED = HISTOGRAMS | {
    "ori_rpc_handled_total",
    "ori_rpc_in_flight",
    "ori_events_api_refusals_total",
    "ori_events_buffered",
    "ori_events_buffer_capacity",
    "ori_events_appended_total",
    "ori_events_dropped_total",
    "ori_events_rejected_total",
    "ori_events_last_flush_timestamp_seconds",
    "ori_events_store_up",
    "ori_log_head_position",
    "ori_projection_checkpoint_position",
    "ori_projection_lag_events",
    "ori_reactor_notifications_total",
    "ori_reactor_deliveries_total",
    "ori_reactor_delivery_retries_total",
    "ori_reactor_delivery_failures_total",
    "ori_subscriptions_active",
    "ori_worker_restarts_total",
    "ori_build_info",
}
# Series Prometheus writes itself for every target; the server does not export them.
PROMETHEUS_SERIES = {"up"}

# Labels the Prometheus Operator sets on every target of a ServiceMonitor, and
# those of them the queries rely on. Any other one the queries use must come
# from the server, so the ServiceMonitor has to drop the operator's.
OPERATOR_TARGET_LABELS = {"namespace", "service", "pod", "container", "endpoint", "job", "instance"}
TARGET_LABELS_USED = {"namespace", "pod", "job", "instance"}

SERVER_ERROR_CODES = {
    "UNAVAILABLE",
    "INTERNAL",
    "UNKNOWN",
    "DEADLINE_EXCEEDED",
    "RESOURCE_EXHAUSTED",
}
CLIENT_ERROR_CODES = {"OUT_OF_RANGE", "INVALID_ARGUMENT"}

# Concrete stand-ins for Grafana's variables, so that dashboard queries parse.
GRAFANA_VALUES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "namespace": "oriserver",
    "pod": ".+",
}
_GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


@pytest.fixture(scope="module")
def monitoring() -> Docs:
    return render_overlay(OVERLAY)


# --- CRD schemas ----------------------------------------------------------------------


def test_the_overlay_is_prod_plus_exactly_the_monitoring_objects(
    monitoring: Docs, rendered: dict[str, Docs]
) -> None:
    def key(doc: Mapping[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    prod = {key(doc): doc for doc in rendered["prod"]}
    added = {key(doc): doc for doc in monitoring if key(doc) not in prod}
    assert set(added) == {
        ("ServiceMonitor", "oriserver"),
        ("PrometheusRule", "oriserver"),
        ("ConfigMap", "oriserver-dashboard"),
        # components/cnpg-monitoring: the PostgreSQL instances' metrics.
        ("PodMonitor", "oriserver-postgres"),
        ("NetworkPolicy", "oriserver-postgres-metrics"),
    }
    # The component adds objects and changes one thing that prod renders: the pod template
    # loses its prometheus.io/* annotations, so that no Prometheus scrapes a pod twice.
    expected = copy.deepcopy(rendered["prod"])
    for doc in expected:
        if doc["kind"] == "Deployment":
            annotations = doc["spec"]["template"]["metadata"]["annotations"]
            assert {"prometheus.io/scrape", "prometheus.io/port"} <= set(annotations)
            doc["spec"]["template"]["metadata"]["annotations"] = {
                k: v for k, v in annotations.items() if not k.startswith("prometheus.io/")
            }
    assert [doc for doc in monitoring if key(doc) in prod] == expected
    for doc in added.values():
        assert doc["metadata"]["namespace"] == "oriserver"
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"].startswith("oriserver")


def test_every_resource_passes_its_schema_and_none_is_of_an_unknown_kind(
    monitoring: Docs, tmp_path: Path
) -> None:
    crds = [doc for doc in monitoring if is_crd_kind(doc)]
    assert sorted(doc["kind"] for doc in crds) == [
        "Cluster",
        "ObjectStore",
        "PodMonitor",
        "PrometheusRule",
        "ScheduledBackup",
        "ServiceMonitor",
    ]
    assert crd_problems(crds) == []
    # Everything else, the dashboard ConfigMap included, through kubernetes-validate
    # --strict, which fails a kind it has no schema for.
    manifest = tmp_path / "core.yaml"
    manifest.write_text(yaml.safe_dump_all([doc for doc in monitoring if not is_crd_kind(doc)]))
    assert schema_problems(manifest, None) == []


def test_the_crd_check_fails_on_an_unknown_kind_field_or_value_and_a_missing_field() -> None:
    broken = [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitr",
            "metadata": {"name": "a"},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "b"},
            "spec": {"endpoints": [{"port": "metrics", "intervall": "30s"}]},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": "c", "lables": {}},
            "spec": {
                "groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "for": "5 min"}]}]
            },
        },
    ]
    problems = "\n".join(crd_problems(broken))
    assert "ServiceMonitr/a: no vendored schema" in problems
    assert "'intervall' was unexpected" in problems
    assert "'selector' is a required property" in problems
    assert "'5 min' does not match" in problems
    assert "'lables' was unexpected" in problems


# --- ServiceMonitor -------------------------------------------------------------------


def test_the_service_monitor_scrapes_the_one_service_port_that_serves_metrics(
    monitoring: Docs,
) -> None:
    monitor = one(monitoring, "ServiceMonitor", "oriserver")
    spec = monitor["spec"]
    assert "namespaceSelector" not in spec, "only Services in its own namespace"
    selector = spec["selector"]["matchLabels"]
    assert set(spec["selector"]) == {"matchLabels"}
    (endpoint,) = spec["endpoints"]
    selected = [
        service
        for service in by_kind(monitoring, "Service")
        if labels_match(selector, service["metadata"].get("labels", {}))
    ]
    assert selected, "the selector matches no Service"
    # The headless and LoadBalancer Services match too; only one may have the port,
    # or every pod would be scraped twice and every sum() doubled.
    serving = [
        service
        for service in selected
        if endpoint["port"] in {port.get("name") for port in service["spec"]["ports"]}
    ]
    assert [service["metadata"]["name"] for service in serving] == ["oriserver"]
    (service,) = serving
    port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])

    deployment = one(monitoring, "Deployment", "oriserver")
    template = deployment["spec"]["template"]
    assert labels_match(service["spec"]["selector"], template["metadata"]["labels"])
    server = container(template["spec"], "server")
    container_ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    settings = load_settings(on_this_machine(effective_env(monitoring, server)))
    assert container_ports[port["targetPort"]] == settings.metrics_port
    assert endpoint.get("path", "/metrics") == "/metrics"
    assert endpoint.get("scheme", "http") == "http"
    assert endpoint["interval"] in {"15s", "30s"}
    assert seconds(endpoint["scrapeTimeout"]) < seconds(endpoint["interval"])

    # job comes from the Service's label, and it is the job the `up` alerts select.
    job = service["metadata"]["labels"][spec["jobLabel"]]
    up_jobs = {
        matcher.value
        for _, selector_node in rule_selectors(monitoring)
        if metric_name(selector_node) == "up"
        for matcher in selector_node.matchers.matchers
        if matcher.name == "job"
    }
    assert up_jobs == {job}


def dropped_target_labels(endpoint: Mapping[str, Any]) -> set[str]:
    """Operator target labels that the endpoint's relabelings drop before the scrape."""
    dropped = set()
    for relabeling in endpoint.get("relabelings", []):
        if relabeling.get("action", "replace").lower() == "labeldrop":
            pattern = re.compile(relabeling["regex"])
            dropped |= {label for label in OPERATOR_TARGET_LABELS if pattern.fullmatch(label)}
    return dropped


def server_labels_the_queries_use(docs: Docs) -> set[str]:
    """Label names in selectors and groupings of ori_* series that are not target labels."""
    used = set()
    for _, node in rule_selectors(docs) + dashboard_selectors():
        if metric_name(node).startswith("ori_"):
            used |= {matcher.name for matcher in node.matchers.matchers}
    for query in rule_queries(docs) + [q for _, q in dashboard_queries()]:
        used |= grouping_labels(concrete(query))
    return used - TARGET_LABELS_USED - {"__name__", "le"}


def test_the_service_monitor_keeps_the_servers_service_label_intact(monitoring: Docs) -> None:
    (endpoint,) = one(monitoring, "ServiceMonitor", "oriserver")["spec"]["endpoints"]
    collisions = server_labels_the_queries_use(monitoring) & OPERATOR_TARGET_LABELS
    # The rules select service="MathHelper", the server's own label; the
    # operator's service=<Kubernetes Service> would rename it to exported_service.
    assert "service" in collisions
    assert collisions <= dropped_target_labels(endpoint)
    assert dropped_target_labels({}) == set()
    assert not one(monitoring, "ServiceMonitor", "oriserver")["spec"].get("honorLabels")


# --- PromQL ---------------------------------------------------------------------------


def concrete(query: str) -> str:
    """The query with Grafana's variables replaced by values PromQL accepts."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VALUES:
            raise ValueError(f"unknown Grafana variable ${name} in: {query}")
        return GRAFANA_VALUES[name]

    return _GRAFANA_VARIABLE.sub(value, query)


def vector_selectors(query: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(query), visit)
    return found


def grouping_labels(query: str) -> set[str]:
    """Labels named in by/without and on/ignoring/group_left/group_right clauses."""
    labels: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)
        if isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                labels.update(node.modifier.matching.labels)
            labels.update(node.modifier.group_labels or [])

    promql_parser.walk(promql_parser.parse(query), visit)
    return labels


def metric_name(node: promql_parser.VectorSelector) -> str:
    if node.name:
        return str(node.name)
    names = [
        m.value
        for m in node.matchers.matchers
        if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal
    ]
    assert len(names) == 1, f"a selector without one literal metric name: {node}"
    return str(names[0])


def alerts(docs: Docs) -> list[dict[str, Any]]:
    (rule,) = by_kind(docs, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def rule_queries(docs: Docs) -> list[str]:
    return [str(r["expr"]) for r in alerts(docs)]


def rule_selectors(docs: Docs) -> list[tuple[str, promql_parser.VectorSelector]]:
    return [
        (rule["alert"], node)
        for rule in alerts(docs)
        for node in vector_selectors(str(rule["expr"]))
    ]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def all_panels(panels: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable's series selector."""
    queries = []
    board = dashboard()
    for panel in all_panels(board["panels"]):
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['id']} {target['refId']}", target["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            text = (
                variable["query"]["query"]
                if isinstance(variable["query"], dict)
                else variable["query"]
            )
            match = _LABEL_VALUES.match(text)
            assert match, f"variable {variable['name']}: not label_values(...): {text}"
            if match.group(1):
                queries.append((f"variable {variable['name']}", match.group(1)))
    return queries


def dashboard_selectors() -> list[tuple[str, promql_parser.VectorSelector]]:
    return [
        (where, node) for where, q in dashboard_queries() for node in vector_selectors(concrete(q))
    ]


def used_metric_names(docs: Docs) -> set[str]:
    return {metric_name(node) for _, node in rule_selectors(docs) + dashboard_selectors()}


def family(sample_name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in HISTOGRAMS:
            return base
    return sample_name


def test_every_alert_expression_and_dashboard_query_parses_as_promql(monitoring: Docs) -> None:
    queries = [(r["alert"], str(r["expr"])) for r in alerts(monitoring)] + dashboard_queries()
    assert len(queries) > 40
    failures = []
    for where, query in queries:
        try:
            promql_parser.parse(concrete(query))
        except ValueError as error:
            failures.append(f"{where}: {error}\n  {query}")
    assert failures == []


def test_the_promql_checks_fail_on_bad_syntax_unknown_variables_and_regex_names() -> None:
    with pytest.raises(ValueError, match="parenthesis"):
        promql_parser.parse("sum(rate(ori_events_dropped_total[5m])")
    with pytest.raises(ValueError, match="unknown Grafana variable"):
        concrete("rate(ori_events_dropped_total[$__nope])")
    assert concrete('rate(x{pod=~"$pod"}[$__rate_interval])') == 'rate(x{pod=~".+"}[5m])'
    query = 'sum by (le) (rate(a_bucket{x="1"}[5m])) / on (pod) group_left {__name__="b"}'
    assert [metric_name(node) for node in vector_selectors(query)] == ["a_bucket", "b"]
    assert grouping_labels(query) == {"le", "pod"}
    with pytest.raises(AssertionError, match="one literal metric name"):
        metric_name(vector_selectors('{__name__=~"ori_.*"}')[0])
    assert family("ori_events_batch_size_count") == "ori_events_batch_size"
    assert family("ori_rpc_handled_total") == "ori_rpc_handled_total"


def test_rules_and_dashboard_use_only_metrics_the_server_documents_exporting(
    monitoring: Docs,
) -> None:
    unknown = {name for name in used_metric_names(monitoring) if family(name) not in EXPORTED}
    assert unknown <= PROMETHEUS_SERIES


# --- Alerts ---------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def operating_anchors() -> set[str]:
    return {
        github_anchor(line.lstrip("#"))
        for line in OPERATING.read_text().splitlines()
        if line.startswith("#")
    }


def test_every_alert_has_a_severity_a_for_duration_and_a_runbook_section(
    monitoring: Docs,
) -> None:
    rules = alerts(monitoring)
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)) >= 10
    anchors = operating_anchors()
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"Oriserver[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert 60 <= seconds(rule["for"]) <= 1800, f"{name}: `for` that avoids flapping"
        url = rule["annotations"]["runbook_url"]
        assert url == RUNBOOK + name.lower(), name
        assert name.lower() in anchors, f"{name}: no such heading in docs/operating.md"


def _alert(docs: Docs, name: str) -> dict[str, Any]:
    (rule,) = [r for r in alerts(docs) if r["alert"] == name]
    return rule


def test_the_alerts_cover_each_failure_mode(monitoring: Docs) -> None:
    watched: dict[str, set[str]] = {}
    for name, node in rule_selectors(monitoring):
        watched.setdefault(family(metric_name(node)), set()).add(name)
    for metric in (
        "ori_rpc_handled_total",
        "ori_rpc_duration_seconds",
        "ori_events_dropped_total",
        "ori_events_rejected_total",
        "ori_events_store_up",
        "ori_events_buffered",
        "ori_projection_lag_events",
        "ori_reactor_delivery_failures_total",
        "ori_worker_restarts_total",
        "up",
    ):
        assert metric in watched, f"no alert on {metric}"
    severities = {rule["alert"]: rule["labels"]["severity"] for rule in alerts(monitoring)}
    for critical in (
        "OriserverRpcErrorRatioHigh",
        "OriserverEventsDropped",
        "OriserverEventStoreDown",
    ):
        assert severities[critical] == "critical"


def test_the_error_ratio_counts_only_server_side_codes_of_mathhelper(monitoring: Docs) -> None:
    expr = str(_alert(monitoring, "OriserverRpcErrorRatioHigh")["expr"])
    code_sets = []
    for node in vector_selectors(expr):
        matchers = {m.name: m for m in node.matchers.matchers}
        assert matchers["service"].value == "MathHelper"
        if "code" in matchers:
            assert matchers["code"].op == promql_parser.MatchOp.Re
            code_sets.append(set(matchers["code"].value.split("|")))
    assert code_sets == [SERVER_ERROR_CODES]
    assert not code_sets[0] & CLIENT_ERROR_CODES


def test_latency_is_judged_on_unary_calls_only(monitoring: Docs) -> None:
    expr = str(_alert(monitoring, "OriserverRpcLatencyHigh")["expr"])
    for node in vector_selectors(expr):
        matchers = {m.name: m.value for m in node.matchers.matchers}
        assert matchers.get("service") == "MathHelper", "streams would own the p99"
    for where, node in dashboard_selectors():
        if metric_name(node) == "ori_rpc_duration_seconds_bucket":
            excluded = {m.value for m in node.matchers.matchers if m.name == "method"}
            assert excluded == {"SubscribeEvents|Watch|ServerReflectionInfo"}, where


# --- Dashboard ------------------------------------------------------------------------


def test_the_dashboard_is_valid_json_with_unique_ids_and_no_overlapping_panels() -> None:
    board = dashboard()
    assert board["uid"] == "oriserver"
    assert board["schemaVersion"] >= 36
    panels = list(all_panels(board["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)) >= 15
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["id"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panels {cells.get((x, y))} and {panel['id']} overlap"
                cells[(x, y)] = panel["id"]


def test_every_panel_queries_the_chosen_prometheus_data_source() -> None:
    board = dashboard()
    (source,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": "${" + source["name"] + "}"}
    # The sidecar provisions the file as is: an import-time ${DS_...} input would stay unresolved.
    assert "__inputs" not in board
    for panel in all_panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["title"], panel["id"]
        assert panel["description"], panel["id"]
        assert panel["datasource"] == reference, panel["id"]
        assert panel["targets"], panel["id"]
        for target in panel["targets"]:
            assert target["datasource"] == reference, panel["id"]
            assert 'namespace="$namespace"' in target["expr"], panel["id"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == reference


def test_the_dashboard_shows_every_metric_the_server_exports() -> None:
    shown = {family(metric_name(node)) for _, node in dashboard_selectors()}
    assert shown >= EXPORTED, sorted(EXPORTED - shown)


def test_the_dashboard_ships_as_a_config_map_the_grafana_sidecar_loads(monitoring: Docs) -> None:
    config_map = one(monitoring, "ConfigMap", "oriserver-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"] == {"oriserver.json": DASHBOARD.read_text()}
    # `kubectl apply` keeps a copy in an annotation limited to 256 KiB.
    assert len(DASHBOARD.read_bytes()) < 200_000


# --- docs/operating.md ----------------------------------------------------------------


def test_the_operator_guide_names_every_metric_and_links_only_to_existing_files() -> None:
    text = OPERATING.read_text()
    missing = sorted(name for name in EXPORTED if f"`{name}`" not in text)
    assert missing == []
    links = relative_links(OPERATING)
    assert len(links) >= 5
    for link in links:
        assert not link.startswith("/"), link
        resolved = (OPERATING.parent / link).resolve()
        assert resolved.is_relative_to(ROOT), link
        assert resolved.exists(), f"docs/operating.md: {link} does not exist"
    assert str(ROOT) not in text


# --- Against a live server ------------------------------------------------------------


def exercise(target: str) -> None:
    """The calls that create the labelled series: MathHelper success and failure, events API."""
    with grpc.insecure_channel(target) as channel:
        math = mh_grpc.MathHelperStub(channel)
        math.Summation(mh.SummationInput(first=1, last=10), timeout=5)
        with pytest.raises(grpc.RpcError):
            math.Factorial(mh.FactorialInput(base=-1), timeout=5)
        events = ev_grpc.EventsServiceStub(channel)
        events.GetRunningTotals(ev.GetRunningTotalsRequest(), timeout=5)
        events.ListEvents(ev.ListEventsRequest(page_size=10), timeout=5)


@dataclass
class Scrape:
    samples: dict[str, list[dict[str, str]]]  # sample name -> the label sets it has
    families: set[str]  # as queried: a counter's name with _total, a histogram's without


def scrape(port: int) -> Scrape:
    """Read http://127.0.0.1:port/metrics with prometheus_client's parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    result = Scrape({}, set())
    for metric_family in text_string_to_metric_families(text):
        suffix = "_total" if metric_family.type == "counter" else ""
        # The text format carries a counter's or histogram's creation time as a
        # separate gauge, <name>_created: part of that family, not one of its own.
        if not metric_family.name.endswith("_created"):
            result.families.add(metric_family.name + suffix)
        for sample in metric_family.samples:
            result.samples.setdefault(sample.name, []).append(dict(sample.labels))
    return result


def scrape_until(port: int, wanted: set[str], timeout: float = 20.0) -> Scrape:
    """Scrape until every wanted sample name is there (the server samples once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = scrape(port)
        except OSError:
            result = Scrape({}, set())
        if wanted <= set(result.samples) or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


def stop(server: ServerProcess) -> None:
    server.signal(signal.SIGTERM)
    try:
        server.wait(60)
    finally:
        server.kill()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2], ids=lambda n: f"workers={n}")
def test_every_metric_the_rules_and_dashboard_use_is_exported_by_a_live_server(
    monitoring: Docs, tmp_path: Path, workers: int
) -> None:
    used = used_metric_names(monitoring) - PROMETHEUS_SERIES
    metrics_port = free_port()
    with webhook_receiver() as hook:
        server = start_server(
            tmp_path,
            {
                "ORI_METRICS_PORT": str(metrics_port),
                "ORI_WORKERS": str(workers),
                "ORI_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
                # The watch-list reactor runs only with a watch list.
                "ORI_WATCH_IPS": "127.0.0.1",
                "ORI_NOTIFY_WEBHOOK_URL": hook.url,
            },
        )
        try:
            exercise(server.target)
            scraped = scrape_until(metrics_port, used)
        finally:
            stop(server)
    samples = scraped.samples
    missing = sorted(used - set(samples))
    assert missing == [], f"used by rules or dashboard, not exported:\n{server.logs()[-3000:]}"

    # The labels the selectors name exist on those series, with the values they match.
    problems = []
    for where, node in rule_selectors(monitoring) + dashboard_selectors():
        name = metric_name(node)
        if name in PROMETHEUS_SERIES:
            continue
        exported_labels = {label for labels in samples[name] for label in labels}
        for matcher in node.matchers.matchers:
            if matcher.name in TARGET_LABELS_USED | {"__name__"}:
                continue
            if matcher.name not in exported_labels:
                problems.append(f"{where}: {name} has no label {matcher.name}")
            elif matcher.op == promql_parser.MatchOp.Equal:
                values = {labels.get(matcher.name) for labels in samples[name]}
                if matcher.value not in values:
                    problems.append(f"{where}: {name}{{{matcher.name}}} is never {matcher.value!r}")
    all_labels = {label for series in samples.values() for labels in series for label in labels}
    queries = rule_queries(monitoring) + [q for _, q in dashboard_queries()]
    for query in queries:
        for label in grouping_labels(concrete(query)) - TARGET_LABELS_USED - all_labels:
            problems.append(f"groups by {label}, which no series has: {query}")
    assert problems == []

    # Every ori_* family the server exports is one the guide and dashboard cover.
    assert {name for name in scraped.families if name.startswith("ori_")} - EXPORTED == set()
