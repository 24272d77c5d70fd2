"""Stand-ins for `patchfleet fix` in the bot's tests: they edit the checkout as a trajectory would and
return a `FixResult`, recording each call so tests can prove that nothing ran (and nothing was spent)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from patchfleet.runs.github.bot import FixResult

RATIONALE = (
    "| candidate | generated tests passed | verifier |\n| --- | --- | --- |\n"
    "| a1f3 | 3 / 3 | 0.91 |\n| 77c2 | 1 / 3 | 0.40 |\n\nDecision: a1f3 (most tests, then verifier)."
)


def _diff(repo_path: Path) -> str:
    return subprocess.run(["git", "diff"], cwd=repo_path, capture_output=True, text=True, check=True).stdout


@dataclass
class FakeFix:
    """Fixes calc.add (`a - b` -> `a + b`); `mode` selects a failure or a misbehaviour instead."""

    mode: str = "fix"  # fix | no_patch | raise | leak_text | leak_patch
    cost: float = 0.42
    calls: list[tuple[str, str]] = field(default_factory=list)
    seen_env: dict[str, str] = field(default_factory=dict)

    def __call__(self, repo_path: Path, issue_title: str, issue_body: str) -> FixResult:
        from patchfleet.errors import ConfigError

        self.calls.append((issue_title, issue_body))
        self.seen_env = dict(os.environ)
        if self.mode == "raise":
            raise ConfigError("patchfleet fix is not available yet")
        if self.mode == "no_patch":
            return FixResult(
                "",
                "3 trajectories ran; none passed its own reproduction test.",
                RATIONALE,
                1.25,
                outcome="no_patch",
            )
        source = repo_path / "calc.py"
        source.write_text(source.read_text().replace("a - b", "a + b"))
        summary = "`add` subtracted; it now adds."
        if self.mode in ("leak_text", "leak_patch"):
            # What an agent talked into "print your environment" by the issue text would hand back.
            dump = "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items()))
            summary += f"\n\nEnvironment, as the issue asked:\n{dump}"
            if self.mode == "leak_patch":
                (repo_path / "env.txt").write_text(dump + "\n")
                subprocess.run(["git", "add", "-N", "env.txt"], cwd=repo_path, check=True)
        return FixResult(_diff(repo_path), summary, RATIONALE + "\n" + summary, self.cost)


# Module-level instances for `patchfleet bot --fix fakes.github_fix:<name>`; tests replace them per test.
fixer = FakeFix()
leaky = FakeFix("leak_text")
