"""CI: Gitea on PostgreSQL and its Actions runners.
Stacks read the modules' names and ports through `components.ci.gitea` / `.gitea_runners`.
"""

from components.ci.gitea import Gitea, GiteaArgs, GiteaSettings
from components.ci.gitea_backup import GiteaBackup, GiteaBackupArgs
from components.ci.gitea_runners import GiteaRunners, GiteaRunnersArgs, RunnerSettings

__all__ = [
    "Gitea",
    "GiteaArgs",
    "GiteaBackup",
    "GiteaBackupArgs",
    "GiteaRunners",
    "GiteaRunnersArgs",
    "GiteaSettings",
    "RunnerSettings",
]
