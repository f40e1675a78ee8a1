"""The rack's vocabulary: node classes, roles, architectures and workload categories.

Creates nothing. The config names these values (`class: reliable`, `category: data`); the
components turn them into labels, taints and placement terms (`components.core.layout`).
"""

from __future__ import annotations

from enum import StrEnum


class NodeClass(StrEnum):
    CONTROL_PLANE = "control-plane"
    GENERAL = "general"
    RELIABLE = "reliable"
    EXPERIMENTAL = "experimental"


class Role(StrEnum):
    SERVER = "server"
    AGENT = "agent"


class Arch(StrEnum):
    ARM64 = "arm64"
    AMD64 = "amd64"
    ARM = "arm"


class Category(StrEnum):
    INFRASTRUCTURE = "infrastructure"
    APPLICATION = "application"
    DATA = "data"
    EXPERIMENTAL = "experimental"
