"""Pure pieces: action parsing, output clipping, patch filtering, config loading, atomic files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.local_sandbox import LocalSandbox

from patchfleet.agent import AgentConfig, Reply, ToolCall
from patchfleet.agent.actions import (
    clip_output,
    is_plain_submission,
    output_submits,
    parse_text_action,
    parse_tool_action,
)
from patchfleet.agent.config import SUBMIT_COMMAND, SUBMIT_SENTINEL, LitellmModelConfig
from patchfleet.agent.exceptions import FormatError
from patchfleet.agent.patch import exclude_new_files, new_file_path, split_patch
from patchfleet.agent.pricing import PricingConfig
from patchfleet.agent.trajectory import read_trajectory
from patchfleet.atomic import write_json_atomic
from patchfleet.errors import ConfigError, DataError

# -- actions ------------------------------------------------------------------------------------------


def test_one_bash_block_is_the_action() -> None:
    reply = Reply("THOUGHT: look\n\n```bash\nls -la\n```\n")
    assert parse_text_action(reply).command == "ls -la"
    multi = Reply("```bash\ncat <<'EOF' > f.py\nprint(1)\nEOF\npython f.py\n```")
    assert parse_text_action(multi).command == "cat <<'EOF' > f.py\nprint(1)\nEOF\npython f.py"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("just words", "no ```bash block"),
        ("```bash\nls\n```\n```bash\npwd\n```", "2 ```bash blocks"),
        ("```python\nprint(1)\n```", "no ```bash block"),
        ("```bash\n\n```", "empty"),
    ],
)
def test_malformed_replies_are_format_errors(content: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_text_action(Reply(content))


def test_tool_actions() -> None:
    good = Reply("", tool_calls=(ToolCall("1", "bash", '{"command": "ls"}'),))
    assert parse_tool_action(good).command == "ls" and parse_tool_action(good).tool_call_id == "1"
    for calls, message in [
        ((), "0 tool calls"),
        ((ToolCall("1", "python", "{}"),), "unknown tool"),
        ((ToolCall("1", "bash", "{not json"),), "not valid JSON"),
        ((ToolCall("1", "bash", '{"cmd": "ls"}'),), "non-empty string"),
    ]:
        with pytest.raises(FormatError, match=message):
            parse_tool_action(Reply("", tool_calls=calls))


def test_submission_forms() -> None:
    assert is_plain_submission(SUBMIT_COMMAND)
    assert is_plain_submission(f"{SUBMIT_COMMAND} && git add -A && git diff --cached")
    assert not is_plain_submission(f"rm -rf /tmp/x && {SUBMIT_COMMAND}")
    assert not is_plain_submission(f"{SUBMIT_COMMAND} && rm repro.py")
    assert output_submits(f"rm x\n{SUBMIT_COMMAND}", f"{SUBMIT_SENTINEL}\ndiff --git ...")
    assert not output_submits(f"python t.py && {SUBMIT_COMMAND}", f"Traceback\n{SUBMIT_SENTINEL}")
    assert not output_submits("cat notes.txt", f"{SUBMIT_SENTINEL}\n")  # the command must ask for it


def test_clip_output_keeps_head_and_tail() -> None:
    text = "".join(f"line {i}\n" for i in range(1000))
    clipped = clip_output(text, 200)
    assert clipped.truncated and clipped.total_chars == len(text)
    assert clipped.text.startswith("line 0\n") and clipped.text.endswith("line 999\n")
    assert "characters omitted" in clipped.text
    assert clip_output("short", 200).text == "short" and not clip_output("short", 200).truncated
    assert clip_output("short", 200, extra_dropped=10).truncated  # the sandbox already cut some


# -- patches --------------------------------------------------------------------------------------------


def test_scratch_files_are_dropped_from_the_patch_only_when_new(tmp_path: Path, run_git) -> None:
    from fakes.local_sandbox import make_repo

    repo = make_repo(tmp_path / "r", {"calc.py": "x = 1\n", "reproduce_bug.py": "tracked = True\n"})
    with LocalSandbox(repo) as box:
        (repo / "calc.py").write_text("x = 2\n")
        (repo / "reproduce_bug.py").write_text("tracked = False\n")  # existed at base: kept
        (repo / "reproduce.py").write_text("print('repro')\n")
        (repo / "pkg").mkdir()
        (repo / "pkg" / "repro_issue.py").write_text("print('nested')\n")
        (repo / "pkg" / "new_module.py").write_text("y = 3\n")
        (repo / "blob.bak").write_bytes(bytes(range(256)))
        patch = box.diff()
    kept, dropped = exclude_new_files(patch, AgentConfig.load().patch_exclude)
    assert sorted(dropped) == ["blob.bak", "pkg/repro_issue.py", "reproduce.py"]
    assert "calc.py" in kept and "reproduce_bug.py" in kept and "pkg/new_module.py" in kept
    assert len(split_patch(kept)) == 3


def test_new_file_path_of_binary_and_modified_sections() -> None:
    binary = "diff --git a/img.png b/img.png\nnew file mode 100644\nindex 0..1\nGIT binary patch\nliteral 3\n"
    modified = "diff --git a/a.py b/a.py\nindex 1..2 100644\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x\n+y\n"
    assert new_file_path(binary) == "img.png"
    assert new_file_path(modified) is None
    assert exclude_new_files("", ["*"]) == ("", [])


# -- config -----------------------------------------------------------------------------------------------


def test_config_load_merges_user_file_and_overrides(tmp_path: Path) -> None:
    user = tmp_path / "agent.yaml"
    user.write_text(
        "agent:\n  limits:\n    cost_limit: 1.5\n  model:\n    type: litellm\n    model: openai/gpt-4o-mini\n"
    )
    config = AgentConfig.load(user, overrides=["limits.step_limit=7", "model.temperature=0.5"])
    assert config.limits.cost_limit == 1.5 and config.limits.step_limit == 7
    assert config.limits.wall_time_limit == 3600  # default kept
    assert isinstance(config.model, LitellmModelConfig) and config.model.temperature == 0.5
    assert "reproduce" in config.templates.instance.lower()


def test_bad_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="limits"):
        AgentConfig.load(overrides=["limits.steps=3"])  # misspelt key: extra fields are forbidden
    with pytest.raises(ConfigError, match="dotted"):
        AgentConfig.load(overrides=["nonsense"])
    with pytest.raises(ValueError, match="override"):
        PricingConfig(mode="override", input_per_mtok=1.0)


def test_api_key_never_reaches_the_trajectory() -> None:
    config = AgentConfig.load(overrides=["model.type=litellm", "model.model=openai/x", "model.api_key=sk-1"])
    dumped = json.dumps(config.model_dump(mode="json"))
    assert "sk-1" not in dumped


def test_scripted_model_config_builds() -> None:
    config = AgentConfig.load(overrides=["model.type=scripted", "model.replies=[a, b]"])
    assert config.model is not None
    model = config.model.build()
    assert model.query([]).content == "a" and model.query([]).content == "b"


# -- files -----------------------------------------------------------------------------------------------


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "t.json"
    for i in range(3):
        write_json_atomic(path, {"messages": [i], "info": {}})
    assert read_trajectory(path)["messages"] == [2]
    assert [p.name for p in path.parent.iterdir()] == ["t.json"]


def test_unreadable_trajectory_is_a_data_error(tmp_path: Path) -> None:
    broken = tmp_path / "b.json"
    broken.write_text('{"messages": [')
    with pytest.raises(DataError):
        read_trajectory(broken)
    broken.write_text("{}")
    with pytest.raises(DataError, match="messages"):
        read_trajectory(broken)


def test_a_sandbox_over_its_own_budget_is_an_outcome_and_a_short_host_is_infrastructure() -> None:
    from patchfleet.agent.loop import error_kind
    from patchfleet.errors import SandboxCrashed, SandboxResourceError

    assert error_kind(SandboxResourceError("wrote 5 GiB", budget="disk")) == "agent"  # a retry repeats it
    assert error_kind(SandboxResourceError("60,000 files", budget="files")) == "agent"
    assert error_kind(SandboxResourceError("host short", budget="host_reserve")) == "infrastructure"
    assert error_kind(SandboxCrashed("gone")) == "infrastructure"
