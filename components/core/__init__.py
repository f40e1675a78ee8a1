"""Shared machinery: Kubernetes objects and SSH commands registered from their wire form,
generated secrets, the layout's labels/taints/placement terms, and NetworkPolicy rendering.
"""

from components.core.certificates import CaCertificate
from components.core.generated_secret import GeneratedSecret, GeneratedSecretArgs
from components.core.kubernetes_object import KubernetesObject
from components.core.layout import (
    CATEGORY_LABEL,
    NAMESPACES,
    WORKLOAD_LABEL,
    namespace_labels,
    pod_security_labels,
    render_namespace,
)
from components.core.network_policy import render_default_deny

__all__ = [
    "CATEGORY_LABEL",
    "NAMESPACES",
    "WORKLOAD_LABEL",
    "CaCertificate",
    "GeneratedSecret",
    "GeneratedSecretArgs",
    "KubernetesObject",
    "namespace_labels",
    "pod_security_labels",
    "render_default_deny",
    "render_namespace",
]
