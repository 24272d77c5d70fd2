"""The step loop: limits stop runaway models, errors are recorded, observations are shaped for the model."""

from __future__ import annotations

import json
import time

from fakes.openai_server import FakeOpenAIServer, FakeReply, Fault, bash_reply

from patchfleet.agent import Agent, ScriptedModel, read_trajectory
from patchfleet.agent.config import SUBMIT_COMMAND


def runaway(command: str = "echo still going", **kwargs):
    """A responder that never submits."""
    return lambda body: bash_reply(command, **kwargs)


def test_step_limit_stops_a_runaway_model(
    server: FakeOpenAIServer, sandbox, llm_config, agent_config, tmp_path
) -> None:
    server.respond_with(runaway())
    traj = tmp_path / "t.json"
    agent = Agent(
        agent_config("limits.step_limit=3"), llm_config(server).build(), sandbox, trajectory_path=traj
    )
    result = agent.run("never ends")
    assert (result.exit_status, result.limit) == ("LimitsExceeded", "steps")
    assert len(server.requests) == 3 and result.submission == ""
    info = read_trajectory(traj)["info"]
    assert info["exit_status"] == "LimitsExceeded" and info["limit"] == "steps"


def test_cost_limit_stops_a_runaway_model(server, sandbox, llm_config, agent_config) -> None:
    server.respond_with(runaway(prompt_tokens=1000, completion_tokens=0))  # $0.001 a call at $1/Mtok
    config = agent_config("limits.cost_limit=0.0025", "limits.step_limit=0")
    result = Agent(config, llm_config(server, max_tokens=10).build(), sandbox).run("expensive")
    assert (result.exit_status, result.limit) == ("LimitsExceeded", "cost")
    # the third call could cost over $0.001 (its prompt extends the 1,000 tokens of the last) plus 10
    # output tokens at $2/Mtok, past the limit with $0.002 spent: not made (before, it was, overrunning it)
    assert len(server.requests) == 2 and result.cost == 0.002


def test_wall_time_limit_also_cuts_a_running_command(server, sandbox, llm_config, agent_config) -> None:
    server.respond_with(runaway("sleep 30"))
    config = agent_config("limits.wall_time_limit=1.0", "limits.step_limit=0")
    started = time.monotonic()
    result = Agent(config, llm_config(server).build(), sandbox).run("slow")
    assert (result.exit_status, result.limit) == ("LimitsExceeded", "wall_time")
    assert time.monotonic() - started < 10  # the command was stopped at the deadline, not after 30 s


def test_consecutive_format_errors_stop_the_run(server, sandbox, llm_config, agent_config) -> None:
    server.respond_with(lambda body: FakeReply("I think I should look at the code."))
    result = Agent(agent_config("limits.format_error_limit=3"), llm_config(server).build(), sandbox).run("x")
    assert (result.exit_status, result.limit) == ("LimitsExceeded", "format_errors")
    assert len(server.requests) == 3
    feedback = server.requests[-1].messages[-1]
    assert feedback["role"] == "user" and "no ```bash block" in feedback["content"]


def test_format_errors_reset_after_a_good_reply(sandbox, agent_config) -> None:
    bad = "no block"
    two = "```bash\nls\n```\n```bash\npwd\n```"
    script = [bad, two, "```bash\nls\n```", bad, bad, f"```bash\n{SUBMIT_COMMAND}\n```"]
    model = ScriptedModel(script)
    result = Agent(agent_config("limits.format_error_limit=3"), model, sandbox).run("x")
    assert result.exit_status == "Submitted"
    assert "2 ```bash blocks" in model.received[2][-1]["content"]


def test_long_output_is_clipped_head_and_tail(sandbox, agent_config) -> None:
    model = ScriptedModel(
        ["```bash\nseq 1 100000\n```", f"```bash\n{SUBMIT_COMMAND}\n```"],
    )
    Agent(agent_config("observation_max_chars=2000"), model, sandbox).run("x")
    observation = model.received[1][-1]["content"]
    assert len(observation) < 3000
    assert "\n1\n2\n3\n" in observation and "99999\n100000\n" in observation
    assert "characters omitted" in observation and "only its head and tail" in observation


def test_timed_out_command_is_reported_to_the_model(sandbox, agent_config) -> None:
    model = ScriptedModel(["```bash\nsleep 5\n```", f"```bash\n{SUBMIT_COMMAND}\n```"])
    Agent(agent_config("command_timeout=0.3"), model, sandbox).run("x")
    assert "stopped after 0.3 seconds" in model.received[1][-1]["content"]


def test_submission_with_extra_commands_runs_them(sandbox, agent_config) -> None:
    model = ScriptedModel(
        [
            "```bash\necho 'x = 1' > stray.py && sed -i 's/a - b/a + b/' calc.py\n```",
            f"```bash\n{SUBMIT_COMMAND} && rm stray.py && git add -A && git diff --cached\n```",
        ]
    )
    result = Agent(agent_config(), model, sandbox).run("x")
    assert result.submitted and "stray.py" not in result.submission and "a + b" in result.submission


def test_model_outage_is_recorded_as_infrastructure(
    server, sandbox, llm_config, agent_config, tmp_path
) -> None:
    server.push(bash_reply("ls"), *[Fault.server_error()] * 4)
    traj = tmp_path / "t.json"
    result = Agent(agent_config(), llm_config(server).build(), sandbox, trajectory_path=traj).run("x")
    assert result.exit_status == "ModelUnavailable"
    assert result.error is not None and result.error.kind == "infrastructure"
    info = read_trajectory(traj)["info"]
    assert info["error"]["class"] == "ModelUnavailable" and info["error"]["kind"] == "infrastructure"
    assert info["model_stats"]["retries"] == 3 and len(info["steps"]) == 1


def test_sandbox_crash_is_recorded(sandbox, agent_config) -> None:
    model = ScriptedModel(["```bash\nls\n```"])
    sandbox.close()
    result = Agent(agent_config(), model, sandbox).run("x")
    assert result.error is not None and result.error.kind == "infrastructure"
    assert result.exit_status == "SandboxError"


def test_tool_calling_mode(server, sandbox, llm_config, agent_config) -> None:
    def call(command: str, call_id: str) -> FakeReply:
        arguments = json.dumps({"command": command})
        return FakeReply(
            "Let me run it.",
            tool_calls=[
                {"id": call_id, "type": "function", "function": {"name": "bash", "arguments": arguments}}
            ],
            finish_reason="tool_calls",
        )

    server.push(call("sed -i 's/a - b/a + b/' calc.py", "c1"), call(SUBMIT_COMMAND, "c2"))
    result = Agent(agent_config("action_mode=tool"), llm_config(server).build(), sandbox).run("x")
    assert result.submitted and "a + b" in result.submission
    first, second = server.requests
    assert first.body["tools"][0]["function"]["name"] == "bash"
    assert not any(key.startswith("_") for key in first.body)  # litellm's private flag stays local
    assistant, tool = second.messages[-2:]
    assert assistant["tool_calls"][0]["id"] == "c1"
    assert tool["role"] == "tool" and tool["tool_call_id"] == "c1" and "<returncode>0" in tool["content"]
