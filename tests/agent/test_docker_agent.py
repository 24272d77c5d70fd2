"""The agent in a real Docker sandbox: the same scripted fix, through litellm, in a container."""

from __future__ import annotations

import pytest
from fakes.openai_server import FakeOpenAIServer, bash_reply

from patchfleet.agent import Agent, AgentConfig, read_trajectory
from patchfleet.agent.config import SUBMIT_COMMAND

pytestmark = pytest.mark.docker


def test_agent_fixes_bug_in_docker_sandbox(
    server: FakeOpenAIServer, llm_config, sandbox_factory, repo_image, tmp_path
) -> None:
    server.push(
        bash_reply(
            "cat <<'EOF' > /tmp/reproduce.sh\ngrep -q 'return a + b' calc.py || { echo BUG; exit 1; }\n"
            "echo FIXED\nEOF\nsh /tmp/reproduce.sh"
        ),
        bash_reply("sed -i 's/a - b/a + b/' calc.py && echo 'print(1)' > reproduce.py"),
        bash_reply("sh /tmp/reproduce.sh"),
        bash_reply(f"{SUBMIT_COMMAND} && git add -A && git diff --cached"),
    )
    sandbox = sandbox_factory(repo_image)
    traj = tmp_path / "docker.traj.json"
    result = Agent(AgentConfig.load(), llm_config(server).build(), sandbox, trajectory_path=traj).run(
        "fix add"
    )

    assert result.submitted, result.error
    assert "+    return a + b" in result.submission
    assert result.excluded_from_patch == ["reproduce.py"] and "build_artifacts" not in result.submission
    observations = [m["content"] for m in server.requests[-1].messages if m["role"] == "user"][1:]
    assert "BUG" in observations[0] and "<returncode>1</returncode>" in observations[0]
    assert "FIXED" in observations[2]
    info = read_trajectory(traj)["info"]
    assert info["exit_status"] == "Submitted"
