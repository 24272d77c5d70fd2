"""`patchfleet fix`: environment detection, the issue from text/file/GitHub URL, the branch commit that
leaves the working tree alone, and the whole command on a real repository with real Docker sandboxes and a
scripted provider behind the real litellm client."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fakes.openai_server import FakeOpenAIServer, FakeReply, bash_reply
from fakes.started import record_starts
from typer.testing import CliRunner

from patchfleet.agent.config import SUBMIT_COMMAND
from patchfleet.data.detect import detect_environment
from patchfleet.data.issue_input import read_issue
from patchfleet.errors import ConfigError, GitHubError
from patchfleet.runs.apply_branch import commit_to_branch
from patchfleet.runs.cli import app
from patchfleet.runs.fix import bot_fix, resolve_repo

CALC = "def add(a, b):\n    return a - b\n"
UNIT_TEST = (
    "import unittest\n\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n"
    "    def test_zero(self):\n        self.assertEqual(add(0, 0), 0)\n"
)
FIX = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"


def make_repo(root: Path, run_git, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    run_git(root, "init", "-q", "-b", "main")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-qm", "initial")
    return root


# -- detection -----------------------------------------------------------------------------------------


def test_detects_pyproject_with_test_extras_requirements_and_pytest(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nrequires-python = ">=3.9"\n'
        '[project.optional-dependencies]\ntest = ["pytest"]\ndocs = ["sphinx"]\n'
        "[tool.pytest.ini_options]\naddopts = '-q'\n"
    )
    (tmp_path / "requirements-dev.txt").write_text("ruff\n")
    env = detect_environment(tmp_path)
    assert env.runner == "pytest" and env.test_cmd.startswith("python -m pytest")
    assert "pyproject.toml" in env.found and "requirements-dev.txt" in env.found
    assert any(step.endswith("-r requirements-dev.txt") for step in env.install_steps)
    assert any(step.endswith("-e '.[test]'") for step in env.install_steps)
    assert env.distro == "bookworm"
    recipe = env.recipe()
    assert recipe.instance_steps == env.install_steps and recipe.env_steps[0] == "python3 -m venv /opt/venv"


def test_unittest_only_repository_needs_no_install_and_overrides_win(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("import unittest\n")
    (tmp_path / "setup.cfg").write_text("[tool:pytest]\n")  # a pytest section alone makes it pytest
    assert detect_environment(tmp_path).runner == "pytest"
    (tmp_path / "setup.cfg").unlink()
    env = detect_environment(tmp_path)
    assert env.runner == "unittest" and env.install_steps == ()
    assert env.test_cmd == "python -m unittest discover -s tests -t ."
    assert env.recipe().env_steps == ("python3 -m venv /opt/venv",)  # offline: no pip
    custom = detect_environment(tmp_path, setup="make deps", test_cmd="make test")
    assert custom.install_steps == ("make deps",) and custom.test_cmd == "make test"
    assert detect_environment(tmp_path, test_cmd="").runner == "none"


def test_setup_py_and_python_cap(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "y"\nrequires-python = ">=3.7,<3.11"\n')
    (tmp_path / "test_y.py").write_text("def test_y():\n    assert True\n")
    env = detect_environment(tmp_path)
    assert env.distro == "bullseye" and any(s.endswith(" -e .") for s in env.install_steps)
    assert env.runner == "pytest"


# -- the issue -----------------------------------------------------------------------------------------


class _GitHub(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        if self.path == "/repos/octo/calc/issues/7":
            status, body = 200, {"title": "add() subtracts", "body": "2 + 3 gives -1", "html_url": "u/7"}
        else:
            status, body = 404, {"message": "Not Found"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_issue_from_text_file_and_github(tmp_path: Path) -> None:
    assert read_issue("add() subtracts\nIt gives -1.").statement == "add() subtracts\n\nIt gives -1."
    path = tmp_path / "issue.md"
    path.write_text("# add() subtracts\n\nIt gives -1.\n")
    issue = read_issue(str(path))
    assert issue.title == "add() subtracts" and issue.body == "It gives -1."
    with pytest.raises(ConfigError):
        read_issue("  ")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _GitHub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        found = read_issue("https://github.com/octo/calc/issues/7", api_url=api, token="")
        assert (found.title, found.body, found.url) == ("add() subtracts", "2 + 3 gives -1", "u/7")
        with pytest.raises(GitHubError, match=r"404.*GITHUB_TOKEN"):
            read_issue("https://github.com/octo/calc/issues/8", api_url=api, token="")
    finally:
        httpd.shutdown()
        httpd.server_close()
    with pytest.raises(GitHubError, match=r"cannot reach the GitHub API.*pass that file"):
        read_issue("https://github.com/octo/calc/issues/7", api_url=api, token="", timeout=2)


# -- the branch ----------------------------------------------------------------------------------------


def test_commit_to_branch_leaves_working_tree_and_index_alone(tmp_path: Path, run_git) -> None:
    repo = make_repo(tmp_path / "calc", run_git, {"calc.py": CALC, "notes.txt": "a\n"})
    base = run_git(repo, "rev-parse", "HEAD").strip()
    (repo / "notes.txt").write_text("local edit\n")  # the user's unstaged work
    (repo / "new.txt").write_text("untracked\n")
    before = run_git(repo, "status", "--porcelain")
    commit = commit_to_branch(repo, base, FIX, "patchfleet/fix-1", "Fix add\n\nbody")
    assert run_git(repo, "status", "--porcelain") == before
    assert (repo / "notes.txt").read_text() == "local edit\n" and (repo / "calc.py").read_text() == CALC
    assert run_git(repo, "rev-parse", "HEAD").strip() == base
    assert run_git(repo, "rev-parse", "patchfleet/fix-1").strip() == commit
    assert "+    return a + b" in run_git(repo, "show", commit)
    assert run_git(repo, "log", "-1", "--format=%s", commit).strip() == "Fix add"
    with pytest.raises(ConfigError, match="already exists"):
        commit_to_branch(repo, base, FIX, "patchfleet/fix-1", "again")


def test_clone_url_resolves_to_its_head(tmp_path: Path, run_git) -> None:
    repo = make_repo(tmp_path / "calc", run_git, {"calc.py": CALC})
    resolved = resolve_repo(repo.as_uri(), tmp_path / "work")
    assert resolved.name == "calc" and resolved.local is None
    assert resolved.commit == run_git(repo, "rev-parse", "HEAD").strip()
    assert (resolved.checkout / "calc.py").read_text() == CALC
    with pytest.raises(ConfigError, match="neither an existing path nor a clone URL"):
        resolve_repo(str(tmp_path / "missing"), tmp_path / "work2")
    (repo / "pkg").mkdir()
    inside = resolve_repo(str(repo / "pkg"), tmp_path / "work3")  # a folder inside means the repository
    assert inside.local == repo.resolve() and inside.commit == resolved.commit
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match="is not a git repository"):
        resolve_repo(str(tmp_path / "plain"), tmp_path / "work4")


# -- the command ---------------------------------------------------------------------------------------

CHECK = "python -c 'from calc import add; assert add(2, 3) == 5'"


def fixer(body: dict[str, Any]) -> FakeReply:
    """Stateless (the turn number picks the reply): the same script serves trajectories running at once."""
    turn = sum(m["role"] == "assistant" for m in body["messages"])
    script = [
        "ls && cat calc.py",
        CHECK,
        f"sed -i 's/a - b/a + b/' calc.py && {CHECK} && python -m unittest discover -s tests -t .",
        SUBMIT_COMMAND,
    ]
    return bash_reply(script[min(turn, len(script) - 1)])


@pytest.mark.docker
def test_fix_apply_end_to_end_and_the_bot_entry(
    tmp_path: Path, run_git, base_image, server: FakeOpenAIServer, monkeypatch
) -> None:
    server.respond_with(fixer)
    started = record_starts(monkeypatch)
    repo = make_repo(
        tmp_path / "calc",
        run_git,
        {"calc.py": CALC, "tests/__init__.py": "", "tests/test_calc.py": UNIT_TEST, "README.md": "calc\n"},
    )
    base = run_git(repo, "rev-parse", "HEAD").strip()
    (repo / "README.md").write_text("my unsaved notes\n")
    before = run_git(repo, "status", "--porcelain")
    issue = tmp_path / "issue.md"
    issue.write_text("add() subtracts\n\nadd(2, 3) returns -1 instead of 5.\n")
    config = tmp_path / "run.yaml"  # a RunConfig, as batch takes
    pricing = "{mode: override, input_per_mtok: 1, output_per_mtok: 2}"
    config.write_text(f"agent:\n  model:\n    pricing: {pricing}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            *("fix", str(repo), str(issue), "--apply", "--n", "2", "--no-pull", "--config", str(config)),
            *("--model", "openai/fake-model", "--api-base", server.base_url, "--api-key-env", "FAKE_KEY"),
            *("--set", "agent.limits.step_limit=8", "--out", str(out)),
            *("--set", "sandbox.cpus=0.5", "--set", "sandbox.memory=1g", "--set", "sandbox.pids_limit=512"),
        ],
        env={"FAKE_KEY": "dummy", "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output + "".join(traceback.format_exception(*result.exc_info))
    # the run config's sandbox section in every sandbox of the fix: agents and selection (builds unlimited)
    ran = [s for s in started if s.role != "build"]
    assert {"agent", "selection"} <= {s.role for s in ran}, ran
    assert {(s.cpus, s.memory, s.pids_limit, s.network) for s in ran} == {(0.5, 2**30, 512, "none")}
    assert "tests: python -m unittest discover -s tests -t ." in result.output
    assert "found: tests/" in result.output
    assert "the repository has uncommitted changes" in result.output
    assert "decision (default):" in result.output

    meta = json.loads((out / "run.json").read_text())
    task_dir = out / meta["tasks"][0]
    branch, commit = meta["branch"], meta["commit"]
    assert branch.startswith("patchfleet/fix-") and len(commit) == 40
    # the user's repository: same HEAD, same status, the fix only on the new branch
    assert run_git(repo, "rev-parse", "HEAD").strip() == base
    assert run_git(repo, "status", "--porcelain") == before
    assert (repo / "calc.py").read_text() == CALC
    assert run_git(repo, "show", f"{branch}:calc.py") == "def add(a, b):\n    return a + b\n"
    assert run_git(repo, "rev-parse", f"{branch}^").strip() == base

    decision = json.loads((task_dir / "decision.json").read_text())["decision"]
    candidates = json.loads((task_dir / "candidates.json").read_text())
    assert len(candidates) == 1 and decision["chosen"] == candidates[0]["id"]
    assert len(candidates[0]["sources"]) == 2
    cells = [json.loads(line) for line in (task_dir / "matrix.jsonl").read_text().splitlines()]
    assert {c["candidate_id"] for c in cells} == {"base", candidates[0]["id"]}
    assert (task_dir / "chosen.patch").read_text() == candidates[0]["patch"]
    preds = [json.loads(line) for line in (out / "preds.jsonl").read_text().splitlines()]
    assert preds[0]["model_patch"] == candidates[0]["patch"]
    html = (out / "report.html").read_text()
    assert "<svg" in html and decision["chosen"] in html
    assert set(meta["stages"]) == {"detect", "environment", "trajectories", "selection", "report"}
    # the chosen patch really fixes the bug in a fresh clone
    clone = tmp_path / "check"
    run_git(tmp_path, "clone", "-q", "-b", branch, str(repo), str(clone))
    done = subprocess.run(
        [sys.executable, "-c", "from calc import add; print(add(2, 3))"],
        cwd=clone,
        capture_output=True,
        text=True,
    )
    assert done.stdout == "5\n"

    # the GitHub bot's entry: the same flow, its FixResult
    fixed = bot_fix(
        repo,
        "add() subtracts",
        "add(2, 3) returns -1 instead of 5.",
        model="openai/fake-model",
        samples=2,
        budget=1.0,
        out_dir=tmp_path / "bot",
        overrides=(
            f"agent.model.api_base={server.base_url}",
            "agent.model.api_key=dummy",
            "agent.model.pricing.mode=free",
            "agent.limits.step_limit=8",
        ),
    )
    assert fixed.ok and fixed.patch == candidates[0]["patch"]
    assert "`calc.py`" in fixed.summary and "(chosen)" in fixed.rationale and fixed.cost == 0.0
    assert "Tests run against every candidate: " in fixed.rationale and "regression" in fixed.rationale
    assert run_git(repo, "status", "--porcelain") == before
