"""Tests for scripts/audit_deps.py (``make audit``): lock parsing, pip-audit's report, the
fallback to PyPI project documents (served over real HTTP by a local stand-in for PyPI, since
no real release can be made vulnerable on demand), and the verdict with accepted findings."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scripts.audit_deps import (
    REPO,
    Accepted,
    AuditError,
    Package,
    Scan,
    Vuln,
    complete_from_projects,
    from_project_document,
    judge,
    load_accepted,
    locked_packages,
    main,
    parse_pip_audit,
)

TODAY = dt.date(2026, 12, 1)
ADVISORY = {
    "id": "GHSA-aaaa-bbbb-cccc",
    "aliases": ["CVE-2026-0001"],
    "fixed_in": ["1.0.1"],
    "withdrawn": None,
}
PROJECTS = {
    "vulnerable": {
        "info": {"version": "1.0"},
        "vulnerabilities": [ADVISORY, {**ADVISORY, "id": "PYSEC-9", "withdrawn": "2026-01-01"}],
    },
    "clean": {"info": {"version": "3.2"}, "vulnerabilities": []},
    "moved-on": {"info": {"version": "2.0"}, "vulnerabilities": []},
}


class _FakePyPI(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")  # pypi/<name>/json
        project = PROJECTS.get(parts[1]) if len(parts) == 3 and parts[2] == "json" else None
        body = json.dumps(project).encode() if project is not None else b"Not Found"
        self.send_response(200 if project is not None else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def pypi_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakePyPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_lock_gives_every_registry_package_and_no_workspace_member() -> None:
    packages = locked_packages(REPO / "uv.lock")

    names = {p.name for p in packages}
    assert {"pip-audit", "redis", "fastapi"} <= names
    assert not {n for n in names if n.startswith("taskforge")}
    assert all(p.version for p in packages)


def test_pip_audit_report_gives_findings_and_what_it_could_not_check() -> None:
    packages = [Package("a", "1"), Package("b", "2"), Package("c", "3"), Package("d", "4")]
    report = {
        "dependencies": [
            {"name": "a", "version": "1", "vulns": []},
            {
                "name": "b",
                "version": "2",
                "vulns": [{"id": "PYSEC-1", "fix_versions": ["2.1"], "aliases": ["CVE-1"]}],
            },
            {"name": "c", "skip_reason": "Dependency not found on PyPI"},
        ]
    }

    scan = parse_pip_audit(report, packages)

    assert scan.checked_by_pip_audit == 2
    assert scan.findings == {Package("b", "2"): [Vuln("PYSEC-1", ("CVE-1",), ("2.1",))]}
    assert scan.unaudited == {
        Package("c", "3"): "Dependency not found on PyPI",
        Package("d", "4"): "pip-audit did not report it",
    }


def test_project_document_gives_the_latest_release_advisories_but_not_withdrawn_ones(
    pypi_url: str,
) -> None:
    vulns = from_project_document(Package("vulnerable", "1.0"), pypi_url)

    assert vulns == [Vuln("GHSA-aaaa-bbbb-cccc", ("CVE-2026-0001",), ("1.0.1",))]


def test_project_document_cannot_vouch_for_an_older_release_or_a_missing_project(
    pypi_url: str,
) -> None:
    older = from_project_document(Package("moved-on", "1.0"), pypi_url)
    missing = from_project_document(Package("nowhere", "1.0"), pypi_url)

    assert isinstance(older, str) and "latest release (2.0)" in older
    assert isinstance(missing, str) and "404" in missing


def test_the_fallback_checks_only_what_pip_audit_could_not(pypi_url: str) -> None:
    skipped = "Dependency not found on PyPI"
    scan = Scan(
        unaudited={
            Package("vulnerable", "1.0"): skipped,
            Package("clean", "3.2"): skipped,
            Package("moved-on", "1.0"): skipped,
        },
        checked_by_pip_audit=5,
    )

    complete_from_projects(scan, pypi_url)

    assert scan.checked_from_project == 2
    assert list(scan.findings) == [Package("vulnerable", "1.0")]
    assert list(scan.unaudited) == [Package("moved-on", "1.0")]
    assert scan.unaudited[Package("moved-on", "1.0")].startswith(skipped + "; then no data")


def _accept(vuln_id: str, package: str, expires: dt.date) -> Accepted:
    return Accepted(vuln_id, package, "reviewed: not reachable from our code", expires)


def test_a_finding_fails_with_the_package_the_advisory_and_the_fix() -> None:
    scan = Scan(findings={Package("b", "2"): [Vuln("PYSEC-1", ("CVE-1",), ("2.1",))]})

    failures, notes = judge(scan, [], TODAY)

    assert failures == [
        "b 2: CVE-1, PYSEC-1 (fixed in 2.1; upgrade: uv lock --upgrade-package b, or accept it"
        " in pyproject.toml [tool.taskforge.audit])"
    ]
    assert notes == []


def test_an_accepted_finding_passes_until_its_expiry_by_id_or_alias() -> None:
    scan = Scan(findings={Package("b", "2"): [Vuln("PYSEC-1", ("CVE-1",))]})
    tomorrow, yesterday = TODAY + dt.timedelta(days=1), TODAY - dt.timedelta(days=1)

    failures, notes = judge(scan, [_accept("CVE-1", "b", tomorrow)], TODAY)
    expired, _ = judge(scan, [_accept("PYSEC-1", "b", yesterday)], TODAY)
    other_package, _ = judge(scan, [_accept("CVE-1", "c", tomorrow)], TODAY)

    assert failures == []
    assert notes == [
        f"accepted until {tomorrow}: b 2: CVE-1, PYSEC-1 ({_accept('', '', TODAY).reason})"
    ]
    assert expired == [f"b 2: CVE-1, PYSEC-1: its acceptance expired on {yesterday}"]
    assert len(other_package) == 1 and other_package[0].startswith("b 2: CVE-1, PYSEC-1 (no fix")


def test_an_unaudited_package_fails_unless_accepted_and_stale_acceptances_are_named() -> None:
    scan = Scan(unaudited={Package("x", "1"): "no data"})
    later = TODAY + dt.timedelta(days=30)

    failures, _ = judge(scan, [], TODAY)
    accepted_failures, notes = judge(
        scan, [_accept("unaudited", "x", later), _accept("CVE-7", "y", later)], TODAY
    )

    assert failures == ["cannot audit x 1: no data"]
    assert accepted_failures == []
    assert notes[0].startswith(f"not audited, accepted until {later}: x 1")
    assert notes[1].startswith("acceptance of CVE-7 for y not needed in this run")


def test_malformed_acceptances_stop_the_audit_before_any_lookup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.taskforge.audit]\naccept = [{ id = "CVE-1", package = "b" }]\n')

    with pytest.raises(AuditError, match="needs id, package, reason and expires"):
        load_accepted(pyproject)
    assert main(["--pyproject", str(pyproject)]) == 1
    assert capsys.readouterr().err.startswith("FAIL [audit]: ")


def test_the_repository_acceptances_are_well_formed() -> None:
    accepted = load_accepted(REPO / "pyproject.toml")

    locked = {p.name for p in locked_packages(REPO / "uv.lock")}
    assert all(a.package in locked and a.reason for a in accepted)
