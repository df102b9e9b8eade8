"""The Grafana dashboard in the repo (grafana/opening-bell.json) against the series the daemon serves: every
metric its queries name exists in `daemon.metrics.Metrics`' registry with the labels the queries use (a renamed
series or label fails here), every metric README's Metrics section lists has a panel, and README lists them all."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from daemon.clock import SystemClock
from daemon.metrics import PREFIX, Metrics
from tests.processes import REPO_ROOT

DASHBOARD = REPO_ROOT / "grafana" / "opening-bell.json"
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}
ADDED_BY_PROMETHEUS = {"job", "instance"}
NAME = re.compile(rf"\b{PREFIX}[a-z0-9_]+\b")
SELECTOR = re.compile(rf"\b({PREFIX}[a-z0-9_]+)\s*\{{([^}}]*)\}}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def served() -> dict[str, set[str]]:
    """Every series name `/metrics` exposes (counters with `_total`), with its labels."""
    metrics = Metrics(SystemClock())
    metrics.token_expiry("ali", SystemClock().now() + timedelta(hours=1))  # the scrape-time family shows a sample
    series: dict[str, set[str]] = {}
    for wrapper in vars(metrics).values():
        if isinstance(wrapper, MetricWrapperBase):
            for suffix in SUFFIXES[wrapper._type]:
                series[wrapper._name + suffix] = set(wrapper._labelnames)
    for family in metrics.registry.collect():
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                series.setdefault(sample.name, set()).update(sample.labels)
    return series


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that draws something, collapsed rows' panels included."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


def queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in panels(dashboard) for target in panel["targets"]]
    variables = [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs + variables


def readme_metrics() -> set[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for line in table for name in re.findall(rf"`({PREFIX}[a-z0-9_]+)`", line.split(" | ")[0])}


def test_every_metric_the_dashboard_queries_is_served_with_the_labels_it_uses(dashboard):
    series = served()
    for expr in queries(dashboard):
        names = set(NAME.findall(expr))
        assert names, expr
        assert names <= set(series), f"{expr}: {sorted(names - set(series))} not served by daemon.metrics"
        for name, matchers in SELECTOR.findall(expr):
            labels = {m.split("=")[0].rstrip("!~").strip() for m in matchers.split(",") if m.strip()}
            assert labels - ADDED_BY_PROMETHEUS <= series[name], f"{expr}: {name} has no label {labels - series[name]}"
        known = set().union(*(series[name] for name in names)) | ADDED_BY_PROMETHEUS
        for grouping in GROUPING.findall(expr):
            labels = {label.strip() for label in grouping.split(",") if label.strip()}
            assert labels <= known, f"{expr}: grouping by {sorted(labels - known)}, which none of its series has"


def test_every_metric_readme_lists_has_a_panel_and_readme_lists_every_one_served(dashboard):
    listed = readme_metrics()
    drawn = {name for panel in panels(dashboard) for t in panel["targets"] for name in NAME.findall(t["expr"])}
    assert {"opening_bell_fill_shares", "opening_bell_fill_rial", "opening_bell_tracker_errors_total"} <= listed
    assert listed - drawn == set(), "README lists metrics no panel draws"
    assert listed == set(served()), "README's Metrics table and daemon.metrics disagree"


def test_the_data_source_is_a_variable_every_panel_and_query_uses(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(dashboard):
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"] and all(t["datasource"] == source for t in panel["targets"]), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == source
    used = {name for expr in queries(dashboard) for name in re.findall(r"\$(\w+)", expr)}
    assert used - {"__range", "__rate_interval", "__interval"} <= set(variables)


def test_panels_have_unique_ids_and_tile_the_24_columns_without_overlapping(dashboard):
    everything = dashboard["panels"]
    ids = [p["id"] for p in everything]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in everything:
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["w"] > 0 and box["x"] + box["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    assert dashboard["uid"] == "opening-bell" and dashboard["id"] is None  # importable anywhere, as a new dashboard


def test_every_query_has_balanced_brackets_and_quotes(dashboard):
    """Not a PromQL parser: a typo that unbalances a query shows here before Grafana shows an error panel."""
    for expr in queries(dashboard):
        assert expr.count('"') % 2 == 0, expr
        depth = []
        for ch in re.sub(r'"[^"]*"', '""', expr):
            if ch in "({[":
                depth.append(ch)
            elif ch in ")}]":
                assert depth and depth.pop() + ch in ("()", "{}", "[]"), expr
        assert not depth, expr
