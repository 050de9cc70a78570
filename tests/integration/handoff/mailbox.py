"""A real SMTP server on a free local port (aiosmtpd), keeping what it is sent.

Addresses in ``bouncing`` are refused at RCPT with a 550, as a mail server refuses a
mailbox that does not exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from funnel_tools.embedded import free_port


@dataclass
class Mailbox:
    port: int
    bouncing: set[str] = field(default_factory=set)
    messages: list[EmailMessage] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.bouncing:
            self.refused.append(address)
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def mailbox() -> Iterator[Mailbox]:
    """A running SMTP server (plain SMTP on 127.0.0.1, as a local relay would be)."""
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
