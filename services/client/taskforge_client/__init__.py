"""TaskForge's Python client: :class:`TaskForge` (sync) and :class:`AsyncTaskForge` (asyncio).

>>> from taskforge_client import TaskForge
>>> with TaskForge() as tf:                        # TASKFORGE_URL, TASKFORGE_API_KEY
...     created = tf.enqueue("echo", {"hello": "world"})
...     task = tf.wait(created.id, timeout=30)
...     task.state, task.result
"""

from importlib.metadata import version

from taskforge_client._calls import RetryPolicy
from taskforge_client.aio import AsyncTaskForge
from taskforge_client.client import TaskForge
from taskforge_client.errors import (
    ApiError,
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TaskForgeError,
    Unreachable,
    WaitTimeout,
)
from taskforge_client.models import (
    Backoff,
    CancelResult,
    DeadLetterPage,
    KeyCreated,
    KeyInfo,
    NewTask,
    Problem,
    QueueStats,
    Task,
    TaskCreated,
    TaskEvent,
    TaskState,
)

__version__ = version("taskforge-client")

__all__ = [
    "ApiError",
    "AsyncTaskForge",
    "AuthenticationError",
    "Backoff",
    "BadRequest",
    "CancelResult",
    "ConfigurationError",
    "Conflict",
    "DeadLetterPage",
    "InvalidRequest",
    "KeyCreated",
    "KeyInfo",
    "NewTask",
    "NotFound",
    "PermissionDenied",
    "Problem",
    "QueueStats",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "Task",
    "TaskCreated",
    "TaskEvent",
    "TaskForge",
    "TaskForgeError",
    "TaskState",
    "Unreachable",
    "WaitTimeout",
]
