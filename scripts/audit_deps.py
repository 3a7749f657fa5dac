"""Scan the locked Python dependencies for known vulnerabilities (``make audit``).

Every package uv.lock pins from a registry is checked against PyPI's vulnerability data (OSV
advisories served by PyPI's JSON API, the service pip-audit uses by default):

1. pip-audit checks every pinned release (``/pypi/<name>/<version>/json``).
2. A package pip-audit could not look up (some PyPI mirrors serve only the project document,
   ``/pypi/<name>/json``) is checked from that document when the locked version is the latest
   release, because the document's vulnerabilities are those of the latest release.
3. A package neither step could check fails the audit: a package nobody looked at is not a pass.

A finding fails the audit unless ``[tool.taskforge.audit] accept`` in pyproject.toml accepts it
with a reason and an expiry date; an expired acceptance fails again. The same list may accept,
with ``id = "unaudited"``, that one package cannot be checked where only project documents are
served (a release held back by another package's pin). Exit status: 0 clean (or
only accepted findings), 1 otherwise; every problem is one ``FAIL [audit]: ...`` line.

Usage: python -m scripts.audit_deps [--lock uv.lock] [--pyproject pyproject.toml]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: Where PyPI's JSON API is.
PYPI_URL = "https://pypi.org"
#: Seconds one PyPI request may take.
TIMEOUT_S = 60.0
#: PyPI requests in flight at once for the project documents.
PARALLEL_REQUESTS = 8
#: The ``id`` of an acceptance that a package could not be audited at all.
UNAUDITED = "unaudited"


@dataclass(frozen=True, order=True)
class Package:
    """One pinned release."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True)
class Vuln:
    """One advisory affecting a release."""

    id: str
    aliases: tuple[str, ...] = ()
    fixed_in: tuple[str, ...] = ()

    def names(self) -> set[str]:
        """The advisory's id and every alias (CVE, GHSA, PYSEC ...)."""
        return {self.id, *self.aliases}


@dataclass(frozen=True)
class Accepted:
    """A finding accepted for a while, with its reason."""

    id: str
    package: str
    reason: str
    expires: dt.date


@dataclass
class Scan:
    """What the lookups found: advisories per package, and packages nobody could check."""

    findings: dict[Package, list[Vuln]] = field(default_factory=dict)
    unaudited: dict[Package, str] = field(default_factory=dict)
    checked_by_pip_audit: int = 0
    checked_from_project: int = 0


class AuditError(Exception):
    """The audit could not run at all (bad configuration, unreadable lock)."""


def locked_packages(lock: Path) -> list[Package]:
    """Every package ``lock`` pins from a registry (workspace members are ours: skipped)."""
    data = tomllib.loads(lock.read_text())
    return sorted(
        Package(p["name"], p["version"])
        for p in data.get("package", [])
        if "registry" in p.get("source", {})
    )


def load_accepted(pyproject: Path) -> list[Accepted]:
    """``[tool.taskforge.audit] accept`` entries.

    Raises:
        AuditError: an entry lacks a field or has a malformed date.
    """
    table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("taskforge", {})
    entries = table.get("audit", {}).get("accept", [])
    accepted = []
    for entry in entries:
        try:
            accepted.append(
                Accepted(
                    id=str(entry["id"]),
                    package=str(entry["package"]),
                    reason=str(entry["reason"]),
                    expires=dt.date.fromisoformat(str(entry["expires"])),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AuditError(
                f"{pyproject}: [tool.taskforge.audit] accept entry {entry!r} needs id, package,"
                f" reason and expires (YYYY-MM-DD): {exc!r}"
            ) from exc
    return accepted


def parse_pip_audit(document: Mapping[str, Any], packages: Iterable[Package]) -> Scan:
    """A :class:`Scan` from pip-audit's JSON report; packages it skipped are unaudited."""
    wanted = {p.name: p for p in packages}
    scan = Scan()
    for dep in document.get("dependencies", []):
        package = wanted.get(dep["name"]) or Package(dep["name"], dep.get("version", "?"))
        if "skip_reason" in dep:
            scan.unaudited[package] = dep["skip_reason"]
            continue
        scan.checked_by_pip_audit += 1
        vulns = [
            Vuln(v["id"], tuple(v.get("aliases", ())), tuple(v.get("fix_versions", ())))
            for v in dep.get("vulns", [])
        ]
        if vulns:
            scan.findings[package] = vulns
    reported = {dep["name"] for dep in document.get("dependencies", [])}
    for package in wanted.values():
        if package.name not in reported:
            scan.unaudited[package] = "pip-audit did not report it"
    return scan


def run_pip_audit(packages: Sequence[Package]) -> Scan:
    """Run pip-audit over ``packages`` (pinned, no resolution, no pip)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="audit-") as requirements:
        requirements.writelines(f"{p.name}=={p.version}\n" for p in packages)
        requirements.flush()
        command = [sys.executable, "-m", "pip_audit", "-r", requirements.name, "--no-deps",
                   "--disable-pip", "--progress-spinner", "off", "--format", "json",
                   "--aliases", "on", "--desc", "off"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        document = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return Scan(unaudited={p: f"pip-audit failed: {tail[0]}" for p in packages})
    return parse_pip_audit(document, packages)


def from_project_document(package: Package, pypi_url: str = PYPI_URL) -> list[Vuln] | str:
    """Advisories of ``package`` from its project document, or why that cannot tell."""
    url = f"{pypi_url}/pypi/{package.name}/json"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 - https
            document = json.load(response)
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    latest = document.get("info", {}).get("version")
    if latest != package.version:
        return (
            f"no data for release {package.version}, and the project document covers only the"
            f" latest release ({latest}); upgrade it (uv lock --upgrade-package {package.name}),"
            f" audit where PyPI serves per-release data, or accept it (id = {UNAUDITED!r})"
        )
    return [
        Vuln(v["id"], tuple(v.get("aliases") or ()), tuple(v.get("fixed_in") or ()))
        for v in document.get("vulnerabilities", [])
        if not v.get("withdrawn")
    ]


def complete_from_projects(scan: Scan, pypi_url: str = PYPI_URL) -> None:
    """Check the packages pip-audit could not from their project documents (step 2)."""
    pending = sorted(scan.unaudited)
    with ThreadPoolExecutor(PARALLEL_REQUESTS) as pool:
        answers = list(pool.map(lambda p: from_project_document(p, pypi_url), pending))
    for package, answer in zip(pending, answers, strict=True):
        if isinstance(answer, str):
            scan.unaudited[package] = f"{scan.unaudited[package]}; then {answer}"
            continue
        del scan.unaudited[package]
        scan.checked_from_project += 1
        if answer:
            scan.findings[package] = answer


def _acceptance(accepted: Sequence[Accepted], package: str, names: set[str]) -> Accepted | None:
    return next((a for a in accepted if a.package == package and a.id in names), None)


def _judge_unaudited(
    scan: Scan, accepted: Sequence[Accepted], today: dt.date, used: set[Accepted]
) -> tuple[list[str], list[str]]:
    failures, notes = [], []
    for package, why in sorted(scan.unaudited.items()):
        match = _acceptance(accepted, package.name, {UNAUDITED})
        if match is None:
            failures.append(f"cannot audit {package}: {why}")
        elif match.expires < today:
            used.add(match)
            failures.append(f"cannot audit {package}; its acceptance expired on {match.expires}")
        else:
            used.add(match)
            notes.append(f"not audited, accepted until {match.expires}: {package} ({match.reason})")
    return failures, notes


def _judge_findings(
    scan: Scan, accepted: Sequence[Accepted], today: dt.date, used: set[Accepted]
) -> tuple[list[str], list[str]]:
    failures, notes = [], []
    for package, vulns in sorted(scan.findings.items()):
        for vuln in vulns:
            names = ", ".join(sorted(vuln.names()))
            fixed = f"fixed in {', '.join(vuln.fixed_in)}" if vuln.fixed_in else "no fix yet"
            match = _acceptance(accepted, package.name, vuln.names())
            if match is None:
                failures.append(
                    f"{package}: {names} ({fixed}; upgrade: uv lock --upgrade-package"
                    f" {package.name}, or accept it in pyproject.toml [tool.taskforge.audit])"
                )
            elif match.expires < today:
                used.add(match)
                failures.append(f"{package}: {names}: its acceptance expired on {match.expires}")
            else:
                used.add(match)
                notes.append(f"accepted until {match.expires}: {package}: {names} ({match.reason})")
    return failures, notes


def judge(scan: Scan, accepted: Sequence[Accepted], today: dt.date) -> tuple[list[str], list[str]]:
    """(FAIL lines, note lines) for ``scan`` under the accepted findings."""
    used: set[Accepted] = set()
    failures, notes = _judge_unaudited(scan, accepted, today, used)
    more_failures, more_notes = _judge_findings(scan, accepted, today, used)
    unused = [
        f"acceptance of {a.id} for {a.package} not needed in this run: remove it once it is"
        " not needed anywhere"
        for a in accepted
        if a not in used
    ]
    return failures + more_failures, notes + more_notes + unused


def main(argv: Sequence[str] | None = None) -> int:
    """Audit uv.lock; print a summary, notes and FAIL lines; 0 when nothing fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lock", type=Path, default=REPO / "uv.lock")
    parser.add_argument("--pyproject", type=Path, default=REPO / "pyproject.toml")
    args = parser.parse_args(argv)
    try:
        accepted = load_accepted(args.pyproject)
        packages = locked_packages(args.lock)
    except (AuditError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"FAIL [audit]: {exc}", file=sys.stderr)
        return 1
    scan = run_pip_audit(packages)
    complete_from_projects(scan)
    failures, notes = judge(scan, accepted, dt.date.today())
    print(
        f"audit: {len(packages)} locked packages; {scan.checked_by_pip_audit} checked by"
        f" pip-audit, {scan.checked_from_project} from PyPI project documents;"
        f" {sum(len(v) for v in scan.findings.values())} finding(s)"
    )
    for note in notes:
        print(f"audit: {note}")
    for failure in failures:
        print(f"FAIL [audit]: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
