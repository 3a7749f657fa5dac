"""What the services export, read from their source, and a light PromQL reader to check
dashboards and alert rules against it (no Prometheus server needed).

Metric definitions are found with `ast`: every ``Counter|Gauge|Histogram|Summary("taskforge_...",
"help", [labels])`` call under services/. Expressions are scanned with regular expressions, which
is enough for the selectors, matchers and grouping clauses the chart writes.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache

from tests.monitoring.tooling import REPO

SERVICES = REPO / "services"

#: Labels Prometheus (Operator) attaches to every scraped series.
TARGET_LABELS = frozenset(
    {"namespace", "job", "instance", "pod", "service", "endpoint", "container"}
)
METRIC_TYPES = {"Counter", "Gauge", "Histogram", "Summary"}
SUFFIXES = {
    "Counter": ("", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
}
#: Labels whose values are free-form or computed rather than literals in the source.
COMPUTED_VALUES = {"status_class": re.compile(r"[1-5]xx")}
#: Labels whose values must be literals found in the services' Python or Lua source.
LITERAL_VALUE_LABELS = frozenset({"outcome", "state", "event", "operation"})

_NAME = re.compile(r"\b(taskforge_[a-z0-9_]+)\b(\s*\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


@dataclass(frozen=True)
class Metric:
    """One metric family a service defines."""

    name: str
    kind: str
    labels: frozenset[str]

    def series_names(self) -> set[str]:
        """The sample names Prometheus stores for this family."""
        base = self.name
        if self.kind == "Counter" and base.endswith("_total"):
            return {base, base[: -len("_total")] + "_created"}
        return {base + suffix for suffix in SUFFIXES[self.kind]}


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _labelnames(node: ast.Call) -> frozenset[str]:
    candidates = node.args[2:3] + [kw.value for kw in node.keywords if kw.arg == "labelnames"]
    for candidate in candidates:
        if isinstance(candidate, ast.List | ast.Tuple):
            return frozenset(
                e.value
                for e in candidate.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            )
    return frozenset()


@cache
def declared_metrics() -> dict[str, Metric]:
    """Every taskforge_* metric family defined under services/, by name."""
    found: dict[str, Metric] = {}
    for path in sorted(SERVICES.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _call_name(node) not in METRIC_TYPES:
                continue
            if not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            name = node.args[0].value
            if isinstance(name, str) and name.startswith("taskforge_"):
                found[name] = Metric(name, str(_call_name(node)), _labelnames(node))
    return found


@cache
def series_index() -> dict[str, Metric]:
    """Every stored sample name (``_bucket``, ``_count``... included) -> its family."""
    return {series: m for m in declared_metrics().values() for series in m.series_names()}


@cache
def source_literals() -> frozenset[str]:
    """Every quoted word in the services' Python and Lua source (label values must be one)."""
    words: set[str] = set()
    for pattern in ("*.py", "*.lua"):
        for path in SERVICES.rglob(pattern):
            words.update(re.findall(r"[\"']([a-z_]+)[\"']", path.read_text(encoding="utf-8")))
    return frozenset(words)


@cache
def outcome_kinds() -> frozenset[str]:
    """The values of ``OutcomeKind = Literal[...]`` (the ``outcome`` label of finished tasks)."""
    for path in SERVICES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "OutcomeKind" for t in node.targets)
                and isinstance(node.value, ast.Subscript)
            ):
                values = node.value.slice
                elts = values.elts if isinstance(values, ast.Tuple) else [values]
                return frozenset(e.value for e in elts if isinstance(e, ast.Constant))
    raise AssertionError("OutcomeKind = Literal[...] not found under services/")


def allowed_values(label: str) -> frozenset[str]:
    """Values a literal-valued label can take."""
    return outcome_kinds() if label == "outcome" else source_literals()


@dataclass(frozen=True)
class Selector:
    """A metric name with its label matchers, as written in an expression."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...]


def selectors(expr: str) -> list[Selector]:
    """The taskforge_* selectors of ``expr``."""
    found = []
    for match in _NAME.finditer(expr):
        body = match.group(2) or ""
        found.append(Selector(match.group(1), tuple(_MATCHER.findall(body))))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Label names in by/without/on/ignoring/group_* clauses."""
    labels: set[str] = set()
    for group in _GROUPING.findall(expr):
        labels.update(part.strip() for part in group.split(",") if part.strip())
    return labels


def problems(expr: str) -> list[str]:
    """Why ``expr`` does not fit the metrics the services export (empty: it fits)."""
    errors: list[str] = []
    index = series_index()
    used = selectors(expr)
    allowed_groups = set(TARGET_LABELS) | {"le"}
    for sel in used:
        metric = index.get(sel.metric)
        if metric is None:
            errors.append(f"unknown metric {sel.metric}")
            continue
        allowed_groups |= metric.labels
        allowed = (
            metric.labels | TARGET_LABELS | ({"le"} if sel.metric.endswith("_bucket") else set())
        )
        for label, op, value in sel.matchers:
            if label not in allowed:
                errors.append(f"{sel.metric} has no label {label!r}")
                continue
            errors.extend(_value_problems(sel.metric, label, op, value))
    for label in grouping_labels(expr) - allowed_groups:
        errors.append(f"grouping by unknown label {label!r}")
    return errors


def _value_problems(metric: str, label: str, op: str, value: str) -> list[str]:
    if "$" in value:  # a Grafana variable
        return []
    alternatives = value.split("|") if op in ("=~", "!~") else [value]
    if label in COMPUTED_VALUES:
        pattern = COMPUTED_VALUES[label]
        return [
            f"{metric}{{{label}}} value {alt!r} is never exported"
            for alt in alternatives
            if not pattern.fullmatch(alt)
        ]
    if label in LITERAL_VALUE_LABELS:
        return [
            f"{metric}{{{label}}} value {alt!r} is not one the services export"
            for alt in alternatives
            if alt not in allowed_values(label)
        ]
    return []
