"""A real SMTP server for tests: aiosmtpd on a free port of 127.0.0.1, recording what it gets.

It runs in a thread of its own (aiosmtpd's ``Controller``), so it works from sync and async
tests alike. Typical use::

    with SmtpServer(users={"app": "s3cret"}, require_auth=True) as smtp:
        smtp.reject("gone@example.com", 550)       # permanent refusal of one recipient
        smtp.reject("busy@example.com", 451)       # transient refusal
        ...                                        # smtp.host, smtp.port
        smtp.messages[0].message["Subject"]        # parsed with email.policy.default

AUTH (PLAIN and LOGIN) is offered without TLS, which only a test server should do. With
``require_auth`` a ``MAIL FROM`` before a successful AUTH is answered ``530``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.ports import free_port

_START_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    #: The user that authenticated on the session, if any.
    login: str | None


class _RecordingHandler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.owner.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self.owner.lock:
            reply = self.owner.rejections.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        received = ReceivedMessage(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            # Parsed with LF line ends so that contents compare equal to what was sent.
            message=message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default),
            login=login,
        )
        with self.owner.lock:
            self.owner.messages.append(received)
        return "250 2.0.0 Message accepted for delivery"


class SmtpServer:
    """A recording SMTP server; see the module docstring.

    Args:
        users: logins and passwords AUTH accepts; without users AUTH always fails.
        require_auth: refuse ``MAIL FROM`` before a successful AUTH.
    """

    def __init__(
        self, *, users: Mapping[str, str] | None = None, require_auth: bool = False
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.users = dict(users or {})
        self.require_auth = require_auth
        #: Messages accepted, in order (appended from the server's thread).
        self.messages: list[ReceivedMessage] = []
        #: Lower-cased recipient address -> the full SMTP reply refusing it.
        self.rejections: dict[str, str] = {}
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def reject(self, address: str, code: int = 550, text: str | None = None) -> None:
        """Answer ``RCPT TO`` for ``address`` with ``code`` (e.g. 550 permanent, 451 transient)."""
        reply = text or ("Mailbox unavailable" if code >= 500 else "Try again later")
        with self.lock:
            self.rejections[address.lower()] = f"{code} {reply}"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            login, password = data.login.decode(), data.password.decode()
            if login in self.users and self.users[login] == password:
                return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)

    def start(self) -> Self:
        """Start listening; retries on another port if the free one was taken meanwhile."""
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_port(self.host)
            controller = Controller(
                _RecordingHandler(self),
                hostname=self.host,
                port=port,
                server_hostname="localhost",  # the default, getfqdn(), can wait on DNS
                authenticator=self._authenticate,
                # auth_required stays False (it warns without TLS); handle_MAIL enforces it.
                auth_require_tls=False,
            )
            try:
                controller.start()
            except OSError:
                if attempt == _START_ATTEMPTS:
                    raise
                continue
            self._controller, self.port = controller, port
            return self
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server; a no-op if it is not running."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
