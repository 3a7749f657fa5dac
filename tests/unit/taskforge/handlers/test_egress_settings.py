"""The egress settings: allow-lists read from comma lists, bad values stop the service."""

from __future__ import annotations

import pytest

from taskforge.errors import ConfigurationError
from taskforge.settings.base import load_settings
from taskforge.settings.handlers import HandlerSettings


def load(monkeypatch: pytest.MonkeyPatch, **variables: str) -> HandlerSettings:
    for name, value in variables.items():
        monkeypatch.setenv(f"TASKFORGE_{name.upper()}", value)
    return load_settings(HandlerSettings, redis_url="redis://unused", env="dev")


def test_allow_lists_are_read_from_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(
        monkeypatch,
        http_allow_cidrs="10.0.0.0/8, fd00::/8,192.168.1.7",
        http_allow_hosts="Hooks.Internal., *.svc.cluster.local",
    )

    assert [str(n) for n in settings.http_allow_cidrs] == [
        "10.0.0.0/8",
        "fd00::/8",
        "192.168.1.7/32",
    ]
    assert settings.http_allow_hosts == ("hooks.internal", "*.svc.cluster.local")


def test_defaults_allow_nothing_and_keep_no_body() -> None:
    settings = HandlerSettings(redis_url="redis://unused", env="dev")

    assert (settings.http_allow_cidrs, settings.http_allow_hosts) == ((), ())
    assert settings.http_result_body_chars == 0


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"http_allow_cidrs": "10.0.0.1/8"}, "TASKFORGE_HTTP_ALLOW_CIDRS.*'10.0.0.1/8'.*host bits"),
        ({"http_allow_cidrs": "10.0.0.0/33"}, "TASKFORGE_HTTP_ALLOW_CIDRS.*'10.0.0.0/33'"),
        ({"http_allow_cidrs": "intranet"}, "TASKFORGE_HTTP_ALLOW_CIDRS.*'intranet' is not a net"),
        ({"http_allow_hosts": "127.0.0.1"}, "TASKFORGE_HTTP_ALLOW_HOSTS.*list it in .*_CIDRS"),
        ({"http_allow_hosts": "2130706433"}, "TASKFORGE_HTTP_ALLOW_HOSTS.*is an address"),
        ({"http_allow_hosts": "*"}, "TASKFORGE_HTTP_ALLOW_HOSTS.*'\\*' is not a host name"),
        ({"http_allow_hosts": "bad host"}, "TASKFORGE_HTTP_ALLOW_HOSTS.*'bad host'"),
        ({"http_result_body_chars": "5000"}, "TASKFORGE_HTTP_RESULT_BODY_CHARS"),
    ],
)
def test_bad_allow_lists_stop_the_service_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load(monkeypatch, **variables)
