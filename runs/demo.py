"""`patchfleet demo`: the whole pipeline on a bundled repository with a real bug, offline, in minutes.

The repository (`demo_assets/repo`, stored as `.txt` package data) is written out and committed as a real
git repository; a scripted model (`runs.demo_script`) answers through a local OpenAI-compatible server
(`runs.demo_server`) and the real litellm client; then `patchfleet fix` runs for real: images, sandboxes,
parallel trajectories, tests, selection, report. A hidden test written for the issue (as SWE-bench's)
evaluates every candidate afterwards, which gives the report its resolve-rate figure. `--model` swaps the
scripted model for a real one and changes nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from patchfleet.atomic import write_json_atomic
from patchfleet.data.issue_input import IssueText, split_text
from patchfleet.runs.config import RunConfig, model_shorthands, with_api_key
from patchfleet.runs.demo_script import TEMPERATURES, respond
from patchfleet.runs.demo_server import ScriptedServer
from patchfleet.runs.fix import RUN_FILE, FixConfig, FixRun, Log, run_fix
from patchfleet.runs.fix_select import SelectionJob, Selector, execute
from patchfleet.runs.report import EVALUATION_FILE, write_report
from patchfleet.selection.model import Contract, TestCase, TestKind

SCRIPTED_MODEL = "openai/patchfleet-demo-scripted"
REAL_MODEL_FLAG = "--model anthropic/claude-sonnet-4-5-20250929"
# what the scripted tokens would cost at a frontier model's list price, so costs and budgets are exercised
SCRIPTED_PRICING = (
    "agent.model.pricing.mode=override",
    "agent.model.pricing.input_per_mtok=3",
    "agent.model.pricing.output_per_mtok=15",
)
SCRIPTED_NOTE = (
    "The model in this demo is SCRIPTED: its replies are fixed in patchfleet/runs/demo_script.py and "
    "served by a local OpenAI-compatible server. Everything else (images, sandboxes, trajectories, tests, "
    f"selection, report) is real. To use a real model: patchfleet demo {REAL_MODEL_FLAG} "
    "(with ANTHROPIC_API_KEY set)."
)
HIDDEN_TEST_PATH = "/testbed/tests/test_patchfleet_hidden.py"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "billsplit",
    "GIT_AUTHOR_EMAIL": "billsplit@example.com",
    "GIT_COMMITTER_NAME": "billsplit",
    "GIT_COMMITTER_EMAIL": "billsplit@example.com",
    # a fixed date makes the commit, hence the content-hashed instance image, the same on every run
    "GIT_AUTHOR_DATE": "2025-01-01T12:00:00+00:00",
    "GIT_COMMITTER_DATE": "2025-01-01T12:00:00+00:00",
}


@dataclass
class DemoRun:
    run: FixRun
    evaluation: dict[str, bool]  # candidate id -> resolves the issue (the hidden test passes)
    scripted: bool


def _assets() -> Traversable:
    return resources.files("patchfleet.runs").joinpath("demo_assets")


def demo_files() -> dict[str, str]:
    """The bundled repository: relative path -> text (the `.txt` suffix that packages them removed)."""
    files: dict[str, str] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".txt"):
                files[prefix + child.name.removesuffix(".txt")] = child.read_text()

    walk(_assets().joinpath("repo"), "")
    return files


def make_demo_repo(dest: Path) -> Path:
    """Write the bundled repository to `dest` (replacing it) and commit it."""
    if dest.exists():
        shutil.rmtree(dest)
    for relative, text in demo_files().items():
        path = dest / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = {**os.environ, **GIT_IDENTITY}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "billsplit 0.1"]):
        subprocess.run(["git", *args], cwd=dest, env=env, check=True, capture_output=True)
    return dest


def demo_issue() -> IssueText:
    return split_text(_assets().joinpath("issue.md.txt").read_text())


def hidden_test(instance_id: str) -> TestCase:
    return TestCase.make(
        instance_id=instance_id,
        kind=TestKind.REGRESSION,
        contract=Contract.PASS_FAIL,
        command="python -m unittest tests.test_patchfleet_hidden",
        files={HIDDEN_TEST_PATH: _assets().joinpath("hidden_test.py.txt").read_text()},
        origin="the demo's hidden test (evaluation only)",
        timeout=120,
    )


def run_demo(
    out_dir: Path,
    *,
    model: str | None = None,
    api_base: str | None = None,
    api_key_env: str | None = None,
    n: int = len(TEMPERATURES),
    overrides: tuple[str, ...] = (),  # dotted RunConfig keys, after the demo's own
    docker_host: str | None = None,
    allow_pull: bool | None = None,  # None: the run config's (sandbox.allow_pull)
    policy: str = "default",
    select: Selector | None = None,
    log: Log = print,
) -> DemoRun:
    """Run the demo into `out_dir` (its repository, run folder and report); `model` makes it real."""
    from patchfleet.sandbox.trust import HostTrust

    scripted = model is None
    if scripted:
        log(SCRIPTED_NOTE)
    server = ScriptedServer(respond).start() if scripted else None
    try:
        sets = [*SCRIPTED_PRICING, "agent.model.api_key=demo-key-not-a-secret"] if server else []
        shorthands = {
            **model_shorthands(model or SCRIPTED_MODEL, server.base_url if server else api_base),
            "agent.limits.step_limit": 20,
            "agent.command_timeout": 60,
            "parallel.n": n,
            "parallel.temperatures": [TEMPERATURES[i % len(TEMPERATURES)] for i in range(n)],
            "selection.policy": policy,
            "selection.generated_tests": 2,
            "outputs.dir": out_dir / "run",
            "max_sandboxes": 4,
            "sandbox.docker_host": docker_host,
            "sandbox.allow_pull": allow_pull,
        }
        run_config = with_api_key(RunConfig.load(None, [*sets, *overrides], shorthands), api_key_env)
        run_config.selection.check()  # a bad --policy fails before the repository is written
        config = FixConfig.from_run_config(run_config)
        repo = make_demo_repo(out_dir / "billsplit")
        issue = demo_issue()
        log(f"repository: {repo} (a real git repository with a real bug)")
        log(f"issue: {issue.title}")
        backend = run_config.sandbox.backend(HostTrust.from_env())
        run = run_fix(str(repo), issue, config, select=select, log=log, backend=backend)
    finally:
        if server is not None:
            server.stop()

    log("evaluating every candidate with the hidden test written for the issue ...")
    job = SelectionJob(
        task=run.task,
        candidates=run.candidates,
        image=run.image,
        backend=config.sandbox.limited(backend),
        test_cmd="",
        out_dir=run.run_dir / run.task.id,
    )
    _, matrix = execute(job, [hidden_test(run.task.id)], with_base=False)
    evaluation = {c.id: False for c in run.candidates}
    evaluation.update({cell.candidate_id: cell.exit_code == 0 for cell in matrix.cells})
    write_json_atomic(run.run_dir / run.task.id / EVALUATION_FILE, evaluation)
    meta = json.loads((run.run_dir / RUN_FILE).read_text())
    meta.update(kind="demo", scripted_model_note=SCRIPTED_NOTE if scripted else "")
    write_json_atomic(run.run_dir / RUN_FILE, meta)
    run.report = write_report(run.run_dir)
    return DemoRun(run=run, evaluation=evaluation, scripted=scripted)
