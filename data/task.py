"""What an issue is for the solving path (`Task`), and what only the evaluator may see (`EvalSpec`).

They are separate types on purpose: the agent, test generation, voting and the verifier receive a
`Task` and have no way to reach the hidden tests or the gold patch.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Task(BaseModel):
    """One issue to resolve: a repository at a commit and a problem statement."""

    model_config = ConfigDict(frozen=True)

    id: str
    repo: str  # owner/name
    base_commit: str
    problem_statement: str
    hints: str = ""
    created_at: str = ""
    version: str = ""  # the repository's release line, which selects the environment recipe
    environment_setup_commit: str = ""

    @property
    def recipe_key(self) -> tuple[str, str]:
        return (self.repo, self.version)


class EvalSpec(BaseModel):
    """The hidden part of a benchmark instance. Evaluation only."""

    model_config = ConfigDict(frozen=True)

    instance_id: str
    test_patch: str
    fail_to_pass: tuple[str, ...] = Field(default=())
    pass_to_pass: tuple[str, ...] = Field(default=())
    gold_patch: str = ""
    environment_setup_commit: str = ""  # also on Task: building the environment needs it, it hides nothing


class Prediction(BaseModel):
    """A patch proposed for an instance, in the SWE-bench predictions format."""

    model_config = ConfigDict(frozen=True)

    instance_id: str
    model_patch: str = ""
    model_name_or_path: str = "unknown"
