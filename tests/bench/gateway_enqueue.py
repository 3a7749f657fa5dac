"""Single-enqueue throughput through the gateway: POST /v1/tasks, one task per request.

Starts the local stack (redis, api, gateway, worker, scheduler) on free ports with rate limits
high enough not to interfere, then drives the gateway with ``wrk`` (Debian package ``wrk``;
``make bench`` installs it) for each connection count and prints requests/s and latency.
A Python load generator would measure itself: httpx's pool tops out near 300 requests/s.
Everything, the load generator included, shares this machine's cores, so the figures are a
floor for a real deployment.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from scripts.devstack import Stack, free_port

WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '{"type": "echo", "queue": "bench-gateway", "payload": {"n": 1}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
done = function(summary, latency, requests)
  io.write(string.format("non2xx=%%d\\n", summary.errors.status))
end
"""


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, str]:
    out = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-s", str(script), f"{url}/v1/tasks"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    figures = {"rps": re.search(r"Requests/sec:\s+([\d.]+)", out)}
    figures["p50"] = re.search(r"50%\s+([\d.]+\w+)", out)
    figures["p99"] = re.search(r"99%\s+([\d.]+\w+)", out)
    figures["non2xx"] = re.search(r"non2xx=(\d+)", out)
    return {k: (m.group(1) if m else "?") for k, m in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is required: apt-get install wrk (make bench does it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(
            gateway_port=free_port(),
            data_dir=Path(tmp),
            quiet=True,
            extra_env={
                "TASKFORGE_DEFAULT_RATE_PER_S": "1000000",
                "TASKFORGE_DEFAULT_BURST": "1000000",
                "TASKFORGE_LOG_LEVEL": "WARNING",
            },
        )
        script = Path(tmp) / "post.lua"
        try:
            stack.start(timeout_s=60)
            script.write_text(WRK_SCRIPT % stack.admin_key)
            print("single enqueue through the gateway (gateway, api, redis, worker, scheduler")
            print("and wrk on this machine's cores)")
            print(f"{'connections':>11} {'requests/s':>10} {'p50':>9} {'p99':>9} {'non-2xx':>7}")
            failed = False
            for connections in args.connections:
                f = run_wrk(stack.url, script, connections, args.seconds)
                failed |= f["non2xx"] != "0"
                print(f"{connections:>11} {f['rps']:>10} {f['p50']:>9} {f['p99']:>9} "
                      f"{f['non2xx']:>7}")  # fmt: skip
        finally:
            stack.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
