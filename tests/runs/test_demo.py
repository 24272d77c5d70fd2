"""`patchfleet demo` as a newcomer runs it: offline, scripted model over the packaged server and the real
litellm client, real images and sandboxes, selection, the hidden-test evaluation and the report."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import litellm
import pytest
from typer.testing import CliRunner

from patchfleet.runs.cli import app
from patchfleet.runs.demo import REAL_MODEL_FLAG, demo_files, make_demo_repo
from patchfleet.runs.demo_script import ORDER, respond
from patchfleet.runs.demo_server import ScriptedServer


def test_bundled_repository_and_scripted_server(tmp_path: Path, run_git) -> None:
    files = demo_files()
    assert {"billsplit/split.py", "tests/test_split.py", "README.md"} <= set(files)
    first = run_git(make_demo_repo(tmp_path / "a"), "rev-parse", "HEAD")
    # a fixed commit date: the same commit, so the same content-hashed image, on every run
    assert run_git(make_demo_repo(tmp_path / "b"), "rev-parse", "HEAD") == first
    with ScriptedServer(respond) as server:
        reply = litellm.completion(
            model="openai/patchfleet-demo-scripted",
            api_base=server.base_url,
            api_key="x",
            temperature=0.3,
            messages=[{"role": "user", "content": "<issue>x</issue> Resolve the issue above by changing"}],
        )
    assert "cat billsplit/split.py" in reply.choices[0].message.content
    assert ORDER[3] == "first-takes-rest"


@pytest.mark.docker
@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path: Path, base_image) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--no-pull"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "The model in this demo is SCRIPTED" in text and REAL_MODEL_FLAG in text
    assert "6/7 trajectories submitted a patch" in text
    assert "hidden test: 2 of 5 candidate(s) resolve the issue; the chosen one does" in text

    run = out / "run"
    meta = json.loads((run / "run.json").read_text())
    task = run / meta["tasks"][0]
    outcomes = json.loads((task / "outcomes.json").read_text())["trajectories"]
    assert [r["exit_status"] for r in outcomes] == ["Submitted"] * 6 + ["LimitsExceeded"]
    assert all(r["cost"] > 0 for r in outcomes)
    candidates = {c["id"]: c for c in json.loads((task / "candidates.json").read_text())}
    stored = json.loads((task / "decision.json").read_text())
    decision = stored["decision"]
    assert decision["policy"] == "default"
    # the evidence the pipeline gathered: a generated test, the repository's suite, verifier scores
    kinds = {t["kind"] for t in json.loads((task / "tests.json").read_text())["tests"]}
    assert {"generated", "regression"} <= kinds
    verifier = json.loads((task / "verifier.json").read_text())
    assert sorted(round(v["score"], 2) for v in verifier.values()) == [0.25, 0.25, 0.25, 0.9, 0.9]
    evaluation = json.loads((task / "evaluation.json").read_text())
    chosen = candidates[decision["chosen"]]
    assert len(chosen["sources"]) == 2 and "divmod(total_cents, parts)" in chosen["patch"]
    assert evaluation[decision["chosen"]] is True and sum(evaluation.values()) == 2
    assert [c["flags"] for c in candidates.values()].count(["syntax-error"]) == 1
    # every other policy, on the same evidence, also picks a patch that resolves the issue
    assert all(evaluation[d["chosen"]] for d in stored["others"].values())
    html = (run / "report.html").read_text()
    assert "SCRIPTED" in html and html.count('<svg class="plot"') == 3 and "resolved 1 / 1" in html
    assert "limit: format_errors" in html  # the trajectory that never acted says why it stopped


@pytest.mark.slow
def test_a_fresh_clone_builds_a_wheel_that_carries_the_demo(tmp_path: Path, run_git) -> None:
    """What a fresh clone installs: the committed tree only, with the demo's repository, issue and hidden
    test, the report template and the prompts as package data (not just files lying in this checkout)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", str(root), str(clone))
    # as pip installs it: an isolated build with the build backend pyproject.toml names
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", "dist", str(clone)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("patchfleet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"patchfleet/runs/demo_assets/repo/{name}.txt" for name in demo_files()}
    expected |= {
        "patchfleet/runs/demo_assets/issue.md.txt",
        "patchfleet/runs/demo_assets/hidden_test.py.txt",
        "patchfleet/runs/templates/report.html.j2",
        "patchfleet/agent/config/default.yaml",
        "patchfleet/agent/config/test_writer.yaml",
        "patchfleet/runs/demo.py",
        "patchfleet/runs/demo_server.py",
    }
    assert expected <= names, sorted(expected - names)
