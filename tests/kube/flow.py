"""A steady flow of tasks through the gateway while the cluster changes under it.

Every task whose enqueue was accepted (201) is recorded; the scenario then requires each of them
to end ``succeeded``. Refused attempts (connection errors, 502-504 while a pod changes) are
retried by :meth:`Gateway.enqueue` and never counted as accepted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tests.kube.kube import Gateway

#: Mostly 1 s tasks, and every fifth one longer than the workers' shutdown grace (3 s in
#: tests/kube/values.yaml), so a SIGTERMed worker has tasks to give back.
SHORT_SLEEP_S = 1.0
LONG_SLEEP_S = 8.0
LONG_EVERY = 5
#: Seconds between enqueues.
INTERVAL_S = 0.25


@dataclass
class TaskFlow:
    """Enqueue sleep tasks in a thread until stopped; ``accepted`` holds their ids."""

    gateway: Gateway
    label: str
    accepted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> TaskFlow:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            seconds = LONG_SLEEP_S if n % LONG_EVERY == 0 else SHORT_SLEEP_S
            try:
                self.accepted.append(
                    self.gateway.enqueue(
                        {"type": "sleep", "payload": {"seconds": seconds, self.label: n}}
                    )
                )
            except AssertionError as exc:  # a refusal other than "try again": the run fails
                self.errors.append(str(exc))
                return
            n += 1
            self._stop.wait(INTERVAL_S)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
