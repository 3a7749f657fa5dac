"""The route table: every path the gateway answers, the scope each needs, and who serves it.

A request matches a rule by method and path template. Paths the table does not know get 404
and known paths with another method 405, before any authentication, so that nothing reaches
the api that the gateway has not classified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from taskforge.apikeys import Scope

#: A path parameter: one non-empty segment.
_PARAM_RE = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


class Target(Enum):
    """Who answers a route."""

    #: Answered by the gateway without authentication (probes, the OpenAPI document).
    PUBLIC = "public"
    #: Answered by the gateway after authentication (the API key routes).
    LOCAL = "local"
    #: Forwarded to the api after authentication.
    UPSTREAM = "upstream"


@dataclass(frozen=True, slots=True)
class Rule:
    """One route: method, path template, required scope and target."""

    method: str
    template: str
    scope: Scope | None
    target: Target = Target.UPSTREAM
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = "[^/]+".join(re.escape(part) for part in _PARAM_RE.split(self.template))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def shape(self) -> str:
        """The template with parameter names erased, to compare with OpenAPI paths."""
        return _PARAM_RE.sub("{}", self.template)


_WRITE: Scope = "tasks:write"
_READ: Scope = "tasks:read"
_ADMIN: Scope = "admin"

#: Every route; exact templates come before parameterised ones that could shadow them.
RULES: tuple[Rule, ...] = (
    Rule("GET", "/healthz", None, Target.PUBLIC),
    Rule("GET", "/readyz", None, Target.PUBLIC),
    Rule("GET", "/openapi.json", None, Target.PUBLIC),
    Rule("POST", "/v1/tasks", _WRITE),
    Rule("POST", "/v1/tasks/batch", _WRITE),
    Rule("GET", "/v1/tasks/{task_id}", _READ),
    Rule("DELETE", "/v1/tasks/{task_id}", _WRITE),
    Rule("GET", "/v1/queues", _READ),
    Rule("GET", "/v1/queues/{queue}", _READ),
    Rule("GET", "/v1/dlq", _ADMIN),
    Rule("DELETE", "/v1/dlq", _ADMIN),
    Rule("POST", "/v1/dlq/requeue", _ADMIN),
    Rule("POST", "/v1/dlq/{task_id}/requeue", _ADMIN),
    Rule("POST", "/v1/keys", _ADMIN, Target.LOCAL),
    Rule("GET", "/v1/keys", _ADMIN, Target.LOCAL),
    Rule("DELETE", "/v1/keys/{key_id}", _ADMIN, Target.LOCAL),
    Rule("POST", "/enqueue", _WRITE),
    Rule("GET", "/tasks/{task_id}", _READ),
    Rule("GET", "/metrics", _READ),
    Rule("POST", "/consume-once", _ADMIN),
    Rule("GET", "/dlq", _ADMIN),
    Rule("DELETE", "/dlq", _ADMIN),
)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The outcome of matching a request: a rule, or the methods the path allows (405)."""

    rule: Rule | None
    allowed: tuple[str, ...] = ()


def match(method: str, path: str, rules: tuple[Rule, ...] = RULES) -> RouteMatch:
    """Find the rule for ``method`` and the decoded ``path``.

    Returns:
        A match with ``rule`` set; or with ``rule`` None and ``allowed`` listing the methods
        of the path's most specific template (405), empty when the path is unknown (404).
    """
    template: str | None = None
    allowed: list[str] = []
    for rule in rules:
        if not rule.pattern.match(path):
            continue
        if rule.method == method:
            return RouteMatch(rule)
        # Like Starlette, 405 lists the methods of the first (most specific) matching path.
        template = template or rule.template
        if rule.template == template:
            allowed.append(rule.method)
    return RouteMatch(None, tuple(allowed))


def rule_for_operation(method: str, openapi_path: str) -> Rule | None:
    """The rule documented by an OpenAPI operation (parameter names may differ)."""
    shape = _PARAM_RE.sub("{}", openapi_path)
    for rule in RULES:
        if rule.method == method.upper() and rule.shape == shape:
            return rule
    return None
