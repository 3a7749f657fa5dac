"""The route table: matching, 404/405, scopes, and OpenAPI path lookup."""

from __future__ import annotations

import pytest

from taskforge_gateway.routing import RULES, Target, match, rule_for_operation


@pytest.mark.parametrize(
    ("method", "path", "template", "scope"),
    [
        ("POST", "/v1/tasks", "/v1/tasks", "tasks:write"),
        ("POST", "/v1/tasks/batch", "/v1/tasks/batch", "tasks:write"),
        ("GET", "/v1/tasks/q.1", "/v1/tasks/{task_id}", "tasks:read"),
        ("DELETE", "/v1/tasks/q.1", "/v1/tasks/{task_id}", "tasks:write"),
        ("GET", "/v1/queues/default", "/v1/queues/{queue}", "tasks:read"),
        ("POST", "/v1/dlq/q.1/requeue", "/v1/dlq/{task_id}/requeue", "admin"),
        ("POST", "/v1/dlq/requeue", "/v1/dlq/requeue", "admin"),
        ("GET", "/metrics", "/metrics", "tasks:read"),
        ("POST", "/consume-once", "/consume-once", "admin"),
        ("DELETE", "/v1/keys/abc", "/v1/keys/{key_id}", "admin"),
        ("GET", "/healthz", "/healthz", None),
    ],
)
def test_match(method: str, path: str, template: str, scope: str | None) -> None:
    rule = match(method, path).rule
    assert rule is not None
    assert (rule.template, rule.scope) == (template, scope)


def test_unknown_paths_and_methods() -> None:
    assert match("GET", "/v2/tasks").rule is None
    assert match("GET", "/v2/tasks").allowed == ()
    assert match("GET", "/v1/tasks/a/b").allowed == ()
    assert match("GET", "/v1/tasks/").allowed == ()
    assert match("PUT", "/v1/tasks/x").allowed == ("GET", "DELETE")
    assert match("OPTIONS", "/v1/tasks/batch").allowed == ("POST",)


def test_every_authenticated_rule_has_a_scope() -> None:
    for rule in RULES:
        assert (rule.scope is None) == (rule.target is Target.PUBLIC), rule


def test_rule_for_operation_ignores_parameter_names() -> None:
    rule = rule_for_operation("get", "/v1/tasks/{id}")
    assert rule is not None and rule.template == "/v1/tasks/{task_id}"
    assert rule_for_operation("get", "/internal/debug") is None
    assert rule_for_operation("put", "/v1/tasks") is None
