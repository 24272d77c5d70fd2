"""Sandboxes: isolated containers with a repository inside, and the images they start from.

The contract is `Sandbox` (base.py); `DockerBackend` starts Docker sandboxes, `SandboxPool` keeps them
warm, `ImageBuilder` makes the layered images, `reaper` removes what a killed run leaked, `limits` and
`watchdog` keep a sandbox to its privileges, its environment and its disk budget.
"""

from patchfleet.sandbox.base import (
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_TIMEOUT,
    REPO_DIR,
    ExecResult,
    Network,
    PatchMethod,
    PatchResult,
    Sandbox,
    SandboxSpec,
)
from patchfleet.sandbox.trust import HostTrust

__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "DEFAULT_TIMEOUT",
    "REPO_DIR",
    "ExecResult",
    "HostTrust",
    "Network",
    "PatchMethod",
    "PatchResult",
    "Sandbox",
    "SandboxSpec",
]
