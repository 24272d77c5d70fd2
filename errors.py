"""The one exception tree of patchfleet.

Infrastructure failures (the machine, Docker, the network, the provider) are kept apart from agent
failures (what the model did), because only the former are retried and neither may be scored as a
plain "unresolved" without saying so.

    PatchfleetError
    ├── ConfigError                  bad configuration or input the user must fix
    │   ├── DataError                a malformed dataset row, prediction or trajectory file
    │   └── PatchApplyError          a patch that no method of the fallback chain applies
    ├── InfrastructureError          retryable: not the agent's fault
    │   ├── SandboxError
    │   │   ├── DockerUnavailable    the engine cannot be reached (message names the fix)
    │   │   ├── SandboxStartError    a container could not be created or started
    │   │   ├── SandboxCrashed       the container died or the exec channel broke
    │   │   ├── SandboxResourceError a sandbox went over a budget (disk); names the budget
    │   │   └── ExecTimeout          host-side deadline passed (command-level timeouts are results)
    │   ├── ImageBuildError          a layer failed to build (log attached)
    │   ├── RepoSourceError          a repository or commit could not be obtained
    │   ├── ModelUnavailable         provider outage, rate limit that outlived retries
    │   ├── WorkerLost               a cluster worker (or its node) died while running a unit
    │   └── GitHubError              a GitHub REST call failed (status and message attached)
    └── AgentError                   not retried: the trajectory itself went wrong
        └── ModelError
            ├── ContextWindowExceeded
            ├── BudgetExceeded
            ├── ModelResponseError   garbage, empty, or unparseable replies
            └── ReplayExhausted      a replayed recording has no more assistant turns
"""

from __future__ import annotations


class PatchfleetError(Exception):
    """Base of every error patchfleet raises on purpose."""


class ConfigError(PatchfleetError):
    """Configuration or input that the user has to correct."""


class DataError(ConfigError):
    """A malformed row, prediction or file; the message names where and which field."""


class PatchApplyError(ConfigError):
    """A patch that neither `git apply`, a whitespace-tolerant `git apply` nor `patch --fuzz` applies."""


class InfrastructureError(PatchfleetError):
    """A failure of the machinery, not of the agent; safe to retry."""


class SandboxError(InfrastructureError):
    """Something went wrong with a sandbox."""


class DockerUnavailable(SandboxError):
    """The Docker engine cannot be reached."""


class SandboxStartError(SandboxError):
    """A container could not be created or started."""


class SandboxCrashed(SandboxError):
    """The container died, or the channel to it broke and could not be restored."""


class SandboxResourceError(SandboxError):
    """A sandbox went over one of its budgets (its disk writes) and was stopped; the message names the
    budget and what was used, so a rerun can raise the budget or the task can be looked at."""

    def __init__(self, message: str, *, budget: str = "", limit: int = 0, used: int = 0) -> None:
        super().__init__(message)
        self.budget = budget
        self.limit = limit
        self.used = used


class ExecTimeout(SandboxError):
    """The host-side deadline of an exec passed without any answer from the container."""


class ImageBuildError(InfrastructureError):
    """An image layer failed to build; `log` holds the tail of the build output."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class RepoSourceError(InfrastructureError):
    """A repository or a commit could not be obtained from its source."""


class ModelUnavailable(InfrastructureError):
    """The model provider failed in a way that outlived our retries (outage, rate limit)."""


class WorkerLost(InfrastructureError):
    """A Ray worker or node died while running a unit of work (`--executor ray`); the unit may be retried."""


class GitHubError(InfrastructureError):
    """A GitHub REST API call failed, after retries where the failure was retryable (rate limits, 5xx)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AgentError(PatchfleetError):
    """The trajectory went wrong because of the agent or model; never retried."""


class ModelError(AgentError):
    """The model could not produce a usable reply."""


class ContextWindowExceeded(ModelError):
    """The conversation no longer fits the model's context window."""


class BudgetExceeded(ModelError):
    """A cost budget would be exceeded by another call."""


class ModelResponseError(ModelError):
    """The model answered with something unusable (empty, malformed, garbage)."""


class ReplayExhausted(ModelError):
    """A replayed trajectory was asked for more assistant turns than it recorded."""
