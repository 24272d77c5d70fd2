"""Test-writing trajectories: scripted test writers in real Docker sandboxes leave scripts behind."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from patchfleet.agent.config import SUBMIT_COMMAND, ScriptedModelConfig
from patchfleet.agent.parallel import ParallelConfig
from patchfleet.data.task import Task
from patchfleet.sandbox.base import SandboxSpec
from patchfleet.selection.generate import generate_tests, load_test_writer_config, script_path
from patchfleet.selection.model import Contract, TestKind

BUGGY = "def add(a, b):\n    return a - b\n"
FIX = (
    "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n"
    "@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
)
TASK = Task(id="local__calc-gen", repo="local/calc", base_commit="HEAD", problem_statement="add() subtracts")
CHECK = "import sys\nsys.path.insert(0, '/testbed')\nfrom calc import add\n"
SCRIPT_A = CHECK + "sys.exit(0 if add(2, 3) == 5 else 2)\n"
SCRIPT_B = CHECK + "got = add(1, 1)\nprint('expected 2, got', got)\nsys.exit(0 if got == 2 else 2)\n"


def writer(script: str | None) -> ScriptedModelConfig:
    """A test writer that writes `script` (or nothing), runs it as the prompt says, and submits."""
    replies = []
    if script is not None:
        replies.append(
            f"THOUGHT: write it\n\n```bash\ncat <<'EOF' > /tmp/patchfleet_test.py\n{script}EOF\n```"
        )
        run = 'cd /testbed && python /tmp/patchfleet_test.py; echo "exit code: $?"'
        replies.append(f"THOUGHT: run it\n\n```bash\n{run}\n```")
    replies.append(f"THOUGHT: done\n\n```bash\n{SUBMIT_COMMAND}\n```")
    return ScriptedModelConfig(replies=replies)


def test_the_test_writer_config_asks_for_the_script_and_its_contract() -> None:
    config = load_test_writer_config(overrides=["limits.step_limit=7"])
    assert config.limits.step_limit == 7 and script_path(config) == "/tmp/patchfleet_test.py"
    prompt = config.templates.instance
    assert "{{ scratch_dir }}/patchfleet_test.py" in prompt and "exits with code 2" in prompt
    assert "NOT to fix the issue" in prompt
    assert config.patch_exclude  # the rest comes from default.yaml


@pytest.fixture(scope="module")
def calc_image(docker_backend, base_image, tmp_path_factory, run_git) -> str:
    """A one-bug repository in /testbed over the evaluation tests' environment layer (a venv with
    `python` first on PATH; same steps and key, so the layer is shared with them)."""
    from patchfleet.data.recipes import Recipe
    from patchfleet.data.sources import LocalCheckout
    from patchfleet.sandbox.images import ImageBuilder, image_spec

    repo = tmp_path_factory.mktemp("generate") / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text(BUGGY)
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "base")
    task = TASK.model_copy(update={"base_commit": run_git(repo, "rev-parse", "HEAD").strip()})
    recipe = Recipe(
        repo="local/calc",
        version="0.1",
        distro="bookworm",
        python="3.11",
        env_steps=("python3 -m venv /opt/venv", "/opt/venv/bin/pip install --no-input -q 'pytest==8.3.3'"),
        env_vars=(("PATH", "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"),),
        instance_steps=(),
        test_cmd="pytest -rA",
        parser="parse_log_pytest",
    )
    builder = ImageBuilder(docker_backend, repo_source=LocalCheckout(path=repo))
    return builder.ensure(image_spec(task, recipe))


@pytest.mark.docker
def test_generated_scripts_are_collected_from_the_sandboxes(
    docker_backend, calc_image, tmp_path: Path
) -> None:
    @contextmanager
    def factory(index: int):
        with docker_backend.start(SandboxSpec(image=calc_image, labels={"role": "test"})) as sandbox:
            yield sandbox

    config = load_test_writer_config()
    parallel = ParallelConfig(
        n=4, models=[writer(SCRIPT_A), writer(SCRIPT_B), writer(None), writer(SCRIPT_A)]
    )
    tests = generate_tests(TASK, config, parallel, factory, tmp_path)
    # one per distinct script, in trajectory order; the writer that wrote nothing adds nothing
    assert [t.files for t in tests] == [
        {"/tmp/patchfleet_test.py": SCRIPT_A},
        {"/tmp/patchfleet_test.py": SCRIPT_B},
    ]
    assert all(t.kind == TestKind.GENERATED and t.contract == Contract.EXIT_CODE for t in tests)
    assert tests[0].command == "cd /testbed && python /tmp/patchfleet_test.py"
    assert tests[0].origin.endswith("0.traj.json (Submitted)") and tests[0].instance_id == TASK.id
    trajectory = (tmp_path / TASK.id / "0.traj.json").read_text()
    assert "exit code: 2" in trajectory  # the writer saw its script say "not fixed" at the base commit
    # the script runs the same in a fresh sandbox: 2 at the base commit, 0 once the fix is applied
    with docker_backend.start(SandboxSpec(image=calc_image, labels={"role": "test"})) as sandbox:
        for test in tests:
            for path, content in test.files.items():
                sandbox.write_file(path, content)
        assert [sandbox.exec(t.command).exit_code for t in tests] == [2, 2]
        assert sandbox.apply_patch(FIX).applied
        assert [sandbox.exec(t.command).exit_code for t in tests] == [0, 0]
