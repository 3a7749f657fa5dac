"""Settings of every TaskForge service: one class per service over a shared base.

All classes live in the core package so that each service can recognise every ``TASKFORGE_*``
variable any service uses, and refuse the ones none does (a typo fails at start-up).
"""

from taskforge.settings.api import ApiSettings
from taskforge.settings.base import CoreSettings, load_settings
from taskforge.settings.gateway import GatewaySettings
from taskforge.settings.handlers import HandlerSettings
from taskforge.settings.scheduler import SchedulerSettings
from taskforge.settings.worker import WorkerSettings

__all__ = [
    "ApiSettings",
    "CoreSettings",
    "GatewaySettings",
    "HandlerSettings",
    "SchedulerSettings",
    "WorkerSettings",
    "load_settings",
]
