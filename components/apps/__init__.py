"""The apps: one Deployment per app with its Service, ingress, disruption budget and
NetworkPolicy, placed by category and wired to what it `uses`.
"""

from components.apps.app_workload import AppWorkload, AppWorkloadArgs

__all__ = [
    "AppWorkload",
    "AppWorkloadArgs",
]
