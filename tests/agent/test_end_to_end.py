"""A scripted model served over HTTP, through the real litellm client, fixes a bug in a real git repo."""

from __future__ import annotations

from pathlib import Path

from fakes.local_sandbox import LocalSandbox
from fakes.openai_server import FakeOpenAIServer, FakeReply, bash_reply

from patchfleet.agent import Agent, read_trajectory
from patchfleet.agent.config import SUBMIT_COMMAND


def fixing_script(scratch: Path) -> list[FakeReply]:
    repro = scratch / "reproduce.py"
    return [
        bash_reply("cat calc.py test_calc.py", "Look at the code first."),
        bash_reply(
            f"cat <<'EOF' > {repro}\nimport sys\nsys.path.insert(0, '.')\nfrom calc import add\n"
            f"print('add(2, 3) =', add(2, 3))\nassert add(2, 3) == 5\nEOF\npython {repro}",
            "Reproduce the bug outside the repository.",
        ),
        bash_reply("sed -i 's/a - b/a + b/' calc.py", "The operator is wrong."),
        bash_reply(f"python {repro}", "Re-run the reproduction."),
        bash_reply(
            f"cp {repro} reproduce.py && python -c 'from calc import add; assert add(-1, 1) == 0' "
            "&& python -m pytest -q test_calc.py",
            "Edge case and the existing test (leaving a stray copy of the script in the repo).",
        ),
        FakeReply(
            "THOUGHT: Done. My patch is:\ndiff --git a/bogus b/bogus\n+this is not the patch\n\n"
            f"```bash\n{SUBMIT_COMMAND} && git add -A && git diff --cached\n```"
        ),
    ]


def test_scripted_model_fixes_bug_end_to_end(
    server: FakeOpenAIServer, sandbox: LocalSandbox, llm_config, agent_config, tmp_path: Path
) -> None:
    server.push(*fixing_script(tmp_path))
    model = llm_config(server).build()
    traj = tmp_path / "out" / "calc.traj.json"

    agent = Agent(agent_config(), model, sandbox, trajectory_path=traj)
    result = agent.run("add() subtracts instead of adding")

    assert result.exit_status == "Submitted", result.error
    # the patch is what the working tree holds, not what the model printed
    assert "-    return a - b\n+    return a + b" in result.submission
    assert "bogus" not in result.submission
    assert "reproduce.py" not in result.submission and result.excluded_from_patch == ["reproduce.py"]
    assert result.submission == sandbox.diff().split("diff --git a/reproduce.py")[0]
    # the canonical submission command is not executed (it would only stage files)
    assert not any("COMPLETE_TASK" in c for c in sandbox.commands)
    assert len(server.requests) == 6

    observations = [m["content"] for m in server.requests[-1].messages if m["role"] == "user"][1:]
    assert "<returncode>1</returncode>" in observations[1] and "AssertionError" in observations[1]
    assert "<returncode>0</returncode>" in observations[3] and "add(2, 3) = 5" in observations[3]
    assert "1 passed" in observations[4]

    document = read_trajectory(traj)
    info = document["info"]
    assert document["trajectory_format"] == "patchfleet-1"
    assert info["exit_status"] == "Submitted" and info["submission"] == result.submission
    assert info["model_stats"]["api_calls"] == 6 and info["model_stats"]["instance_cost"] > 0
    assert len(info["steps"]) == 6
    assert all(step["llm_time"] > 0 for step in info["steps"])
    assert all(step["exec_time"] > 0 for step in info["steps"][:5])
    assert info["config"]["agent"]["model"] is None
    roles = [m["role"] for m in document["messages"]]
    assert roles == ["system", "user"] + ["assistant", "user"] * 5 + ["assistant"]


def test_prompt_asks_for_reproduction_outside_repo(
    server, sandbox, llm_config, agent_config, tmp_path
) -> None:
    server.push(bash_reply(SUBMIT_COMMAND))
    Agent(agent_config(), llm_config(server).build(), sandbox).run("Issue text here")
    system, instance = server.requests[0].messages[:2]
    assert system["role"] == "system" and "exactly one" in system["content"].lower()
    assert "Issue text here" in instance["content"]
    assert f"{tmp_path}/reproduce.py" in instance["content"]
    assert SUBMIT_COMMAND in instance["content"]
    assert str(sandbox.repo) in instance["content"]
