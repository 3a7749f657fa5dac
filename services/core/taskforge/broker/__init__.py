"""Redis operations on tasks: each public coroutine is one atomic transition or one read."""

from taskforge.broker.admin import DeadLetterPage, QueueStats
from taskforge.broker.connection import Broker
from taskforge.broker.consume import FetchedTask, Outcome

__all__ = ["Broker", "DeadLetterPage", "FetchedTask", "Outcome", "QueueStats"]
