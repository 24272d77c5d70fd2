"""Harvesting tests from trajectories (ours, mini-swe-agent's, SWE-agent's) and from candidate patches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchfleet.selection.harvest import (
    apply_section,
    changed_tests,
    harvest_from_candidates,
    harvest_from_trajectories,
    harvest_from_trajectory,
    repo_packages,
    trajectory_files,
)
from patchfleet.selection.model import Candidate, Contract, TestKind
from patchfleet.selection.shellwords import parse

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MINI = DATA / "trajectories" / "mini-swe-agent-gemini-3-pro"
needs_data = pytest.mark.skipif(not MINI.is_dir(), reason=f"{MINI} is missing")


def mini_trajectory(tmp_path: Path, commands: list[tuple[str, int]], submission: str = "") -> Path:
    """A trajectory file in mini-swe-agent's format: one ```bash block per assistant turn."""
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "issue"}]
    for command, code in commands:
        messages.append({"role": "assistant", "content": f"THOUGHT: go\n\n```bash\n{command}\n```"})
        messages.append({"role": "user", "content": f"<returncode>{code}</returncode>\n<output>\n</output>"})
    path = tmp_path / "calc__calc-1.traj.json"
    path.write_text(json.dumps({"messages": messages, "info": {"submission": submission}}))
    return path


SUBMISSION = (
    "diff --git a/calc/core.py b/calc/core.py\n--- a/calc/core.py\n+++ b/calc/core.py\n@@ -1 +1 @@\n-x\n+y\n"
)


def test_shell_reader_finds_heredocs_redirections_and_pipelines() -> None:
    pipelines = parse(
        "cat <<'EOF' > r.py\nprint('$HOME')\nEOF\n"
        'cd sub && PYTHONPATH=$(pwd) python -c "import calc; print(\\"a\\")" 2>&1 | head -5; echo hi >> f.txt'
    )
    cat, cd, python, echo = pipelines
    assert cat.commands[0].heredocs[0].content() == "print('$HOME')\n"
    assert cat.commands[0].stdout_files() == [("r.py", False)]
    assert cd.commands[0].argv == ["cd", "sub"]
    assert python.commands[0].argv == ["python", "-c", 'import calc; print("a")']
    assert [c.argv[0] for c in python.commands] == ["python", "head"]
    assert python.commands[0].text() == 'PYTHONPATH=$(pwd) python -c "import calc; print(\\"a\\")" 2>&1'
    assert echo.commands[0].stdout_files() == [("f.txt", True)]
    unquoted = parse("cat > a.py <<EOF\nx = '\\$y'\nEOF")[0].commands[0].heredocs[0]
    assert unquoted.content() == "x = '$y'\n"


INLINE = "python - <<'EOF'\nimport calc\nprint(calc.mul(2, 3))\nEOF"


def test_scripts_that_were_written_and_run_become_harvested_tests(tmp_path: Path) -> None:
    path = mini_trajectory(
        tmp_path,
        [
            ("cat <<'EOF' > reproduce.py\nimport calc\nprint(calc.add(2, 3))\nEOF", 0),
            ("python reproduce.py", 0),
            # rewritten and run again: the last version is the one kept
            ("cat > reproduce.py << 'EOF'\nimport calc\nprint(calc.add(2, 3), calc.add(0, 0))\nEOF", 0),
            ("python reproduce.py 2>&1 | tail -3", 0),
            # an edit of the repository through a script: not a test
            (
                "cat <<'EOF' > apply_fix.py\np = 'calc/core.py'\ns = open(p).read()\n"
                "open(p, 'w').write(s.replace('-', '+'))\nEOF\npython3 apply_fix.py",
                0,
            ),
            # written but never run
            ("cat <<'EOF' > unused.py\nimport calc\nEOF", 0),
            # changed by sed -i afterwards: its content at the run is unknown
            ("echo 'import calc' > tweak.py && sed -i 's/calc/calc as c/' tweak.py && python tweak.py", 0),
            # a probe that does not touch the repository
            ('python -c "import sys; print(sys.version)"', 0),
            # inline script reading the repository, in a scratch directory with an export
            (
                f"mkdir -p /tmp/w && cd /tmp/w\nexport FLAG=1\n{INLINE}",
                1,
            ),
            ("python setup.py --version", 0),  # a repository script, never written by the agent
        ],
        submission=SUBMISSION,
    )
    tests = harvest_from_trajectory(path, "calc__calc-1")
    by_command = {t.command: t for t in tests}
    assert set(by_command) == {
        "cd /testbed && python reproduce.py 2>&1",
        f"mkdir -p /tmp/w && cd /tmp/w && export FLAG=1 && {INLINE}",
    }
    reproduce = by_command["cd /testbed && python reproduce.py 2>&1"]
    assert reproduce.files == {
        "/testbed/reproduce.py": "import calc\nprint(calc.add(2, 3), calc.add(0, 0))\n"
    }
    assert reproduce.kind == TestKind.HARVESTED and reproduce.contract == Contract.BEHAVIOUR
    assert reproduce.instance_id == "calc__calc-1" and reproduce.origin.endswith("step 4")
    assert reproduce.id == tests[0].id  # reproduction scripts come first
    assert all(t.timeout > 0 for t in tests)


def test_exit_code_contract_only_when_the_script_demonstrably_follows_it(tmp_path: Path) -> None:
    script = "import sys, calc\nsys.exit(0 if calc.add(2, 3) == 5 else 2)\n"
    contract = mini_trajectory(
        tmp_path, [(f"cat <<'EOF' > check.py\n{script}EOF", 0), ("python check.py", 2)]
    )
    assert [t.contract for t in harvest_from_trajectory(contract, "calc__calc-1")] == [Contract.EXIT_CODE]
    crashed = mini_trajectory(tmp_path, [(f"cat <<'EOF' > check.py\n{script}EOF", 0), ("python check.py", 1)])
    assert [t.contract for t in harvest_from_trajectory(crashed, "calc__calc-1")] == [Contract.BEHAVIOUR]


def test_files_a_run_needs_come_along_and_repository_files_never_do(tmp_path: Path) -> None:
    path = mini_trajectory(
        tmp_path,
        [
            ("mkdir -p repro && cat <<'EOF' > repro/conf.py\nproject = 'x'\nEOF", 0),
            ("printf 'Title\\n=====\\n' > repro/index.rst", 0),
            ("cat <<'EOF' > data.txt\n1 2\nEOF\ncat <<'EOF' > run.sh\ncalc-cli data.txt\nEOF", 0),
            ("./run.sh", 0),
            ("cd repro && python -m calc.build .", 0),
            ("cat calc/core.py", 0),
            ("cat <<'EOF' > calc/core.py\nx = 1\nEOF", 0),  # rewriting a repository file
            ("python calc/core.py", 0),
            # appended to a file the trajectory never wrote: its content is unknown, so is the run's
            ("echo '[calc]' >> setup.cfg && python -c \"import calc; print(open('setup.cfg').read())\"", 0),
        ],
        submission=SUBMISSION,
    )
    tests = {t.command: t for t in harvest_from_trajectory(path, "calc__calc-1")}
    assert tests["cd /testbed && chmod +x ./run.sh && ./run.sh"].files == {
        "/testbed/run.sh": "calc-cli data.txt\n",
        "/testbed/data.txt": "1 2\n",
    }
    assert tests["cd /testbed/repro && python -m calc.build ."].files == {
        "/testbed/repro/conf.py": "project = 'x'\n",
        "/testbed/repro/index.rst": "Title\n=====\n",
    }
    assert len(tests) == 2


def test_our_tool_call_trajectories_and_swe_agent_trajectories(tmp_path: Path) -> None:
    def call(command: str) -> dict:
        arguments = json.dumps({"command": command})
        return {"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": arguments}}]}

    ours = tmp_path / "ours.traj.json"
    messages = [
        call("cat <<'EOF' > /tmp/r.py\nimport calc\nEOF"),
        {"role": "tool", "content": "<returncode>0</returncode>", "extra": {"exit_code": 0}},
        call("python /tmp/r.py"),
        {"role": "tool", "content": "<returncode>0</returncode>", "extra": {"exit_code": 0}},
    ]
    ours.write_text(json.dumps({"trajectory_format": "patchfleet-1", "messages": messages, "info": {}}))
    [test] = harvest_from_trajectory(ours, "calc__calc-1")
    assert test.command == "cd /testbed && python /tmp/r.py" and test.files == {"/tmp/r.py": "import calc\n"}

    swe = tmp_path / "swe.traj"
    steps = [
        {"action": "create reproduce.py"},
        {"action": "edit 1:1\nimport calc\nprint(calc.add(1, 1))\nend_of_edit"},
        {"action": "python reproduce.py"},
        {"action": "str_replace_editor create /testbed/other.py --file_text 'import calc\nprint(0)\n'"},
        {"action": "python other.py"},
    ]
    swe.write_text(json.dumps({"trajectory": steps, "info": {"submission": ""}}))
    tests = {t.command: t.files for t in harvest_from_trajectory(swe, "calc__calc-1")}
    assert tests == {
        "cd /testbed && python reproduce.py": {
            "/testbed/reproduce.py": "import calc\nprint(calc.add(1, 1))\n"
        },
        "cd /testbed && python other.py": {"/testbed/other.py": "import calc\nprint(0)\n"},
    }


def test_an_instance_s_trajectories_in_both_layouts_are_harvested_together(tmp_path: Path) -> None:
    script = [("cat <<'EOF' > reproduce.py\nimport calc\nEOF", 0), ("python reproduce.py", 0)]
    mini = mini_trajectory(tmp_path, script)  # <folder>/<id>.traj.json
    ours = tmp_path / "runs" / "calc__calc-1"
    ours.mkdir(parents=True)
    mini.rename(tmp_path / "calc__calc-1.traj.json")
    for index in (0, 1, 10):
        (ours / f"{index}.traj.json").write_text((tmp_path / "calc__calc-1.traj.json").read_text())
    (ours / "2.traj.json").write_text("{not json")
    paths = trajectory_files([tmp_path, tmp_path / "runs"], "calc__calc-1")
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "calc__calc-1.traj.json",
        *(f"runs/calc__calc-1/{i}.traj.json" for i in (0, 1, 2, 10)),
    ]
    [test] = harvest_from_trajectories(paths, "calc__calc-1")  # the same script five times, one unreadable
    assert test.files == {"/testbed/reproduce.py": "import calc\n"}


def test_repo_packages_come_from_the_id_and_the_modified_files() -> None:
    patch = SUBMISSION + "diff --git a/scratch/x.py b/scratch/x.py\nnew file mode 100644\n--- /dev/null\n"
    assert repo_packages("pytest-dev__pytest-1234", patch) >= {"pytest", "_pytest", "calc"}
    assert "scratch" not in repo_packages("pytest-dev__pytest-1234", patch)


BASE_TEST = (
    "import calc\n\n\ndef test_add():\n    assert calc.add(1, 1) == 2\n\n\ndef test_mul():\n    assert 1\n"
)


def candidate(patch: str, ident: str = "c1") -> Candidate:
    return Candidate(id=ident, instance_id="calc__calc-1", patch=patch)


def test_candidate_tests_run_the_new_and_changed_functions_of_the_candidate_version() -> None:
    modified = (
        SUBMISSION + "diff --git a/tests/test_calc.py b/tests/test_calc.py\n"
        "--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n"
        "@@ -3,7 +3,11 @@ import calc\n \n def test_add():\n     assert calc.add(1, 1) == 2\n"
        "+    assert calc.add(2, 2) == 4\n \n \n def test_mul():\n     assert 1\n+\n+\n+class TestNew:\n"
        "+    def test_zero(self):\n+        assert calc.add(0, 0) == 0\n"
    )
    added = (
        "diff --git a/calc/test_extra.py b/calc/test_extra.py\nnew file mode 100644\n--- /dev/null\n"
        "+++ b/calc/test_extra.py\n@@ -0,0 +1,2 @@\n+def test_extra():\n+    pass\n"
    )
    reads: list[str] = []

    def read_base(path: str) -> str | None:
        reads.append(path)
        return BASE_TEST if path == "tests/test_calc.py" else None

    tests = harvest_from_candidates([candidate(modified), candidate(added, "c2")], read_base=read_base)
    first, second = tests
    assert first.kind == TestKind.CANDIDATE and first.contract == Contract.PASS_FAIL
    assert first.command == (
        "cd /testbed && python -m pytest -p no:cacheprovider -rA "
        "tests/test_calc.py::test_add tests/test_calc.py::TestNew::test_zero"
    )
    assert "assert calc.add(2, 2) == 4" in first.files["/testbed/tests/test_calc.py"]
    assert first.files["/testbed/tests/test_calc.py"].endswith("assert calc.add(0, 0) == 0\n")
    assert second.files == {"/testbed/calc/test_extra.py": "def test_extra():\n    pass\n"}
    assert second.command.endswith("calc/test_extra.py::test_extra")
    assert reads == ["tests/test_calc.py"]  # only modified test files are read at the base
    # without the base, modified files cannot be rebuilt: only new ones are used
    assert len(harvest_from_candidates([candidate(modified), candidate(added, "c2")])) == 1
    [sympy] = harvest_from_candidates([candidate(modified)], read_base=read_base, runner="sympy")
    assert sympy.command == (
        "cd /testbed && python bin/test -C --verbose tests/test_calc.py -k test_add test_zero"
    )
    custom = harvest_from_candidates([candidate(added)], runner="python bin/test {nodes}")
    assert custom[0].command == "cd /testbed && python bin/test calc/test_extra.py::test_extra"


def test_hunks_apply_despite_lost_trailing_whitespace_and_shifted_lines() -> None:
    base = "a\nb  \nc\nd\ne\nf\n"
    section = "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n@@ -10,2 +10,3 @@\n e\n+E\n f\n"
    assert apply_section("x\n" + base, section) == "x\na\nB\nc\nd\ne\nE\nf\n"
    assert apply_section(base, "@@ -1,2 +1,2 @@\n zzz\n-q\n+r\n") is None
    assert changed_tests(BASE_TEST, BASE_TEST.replace("== 2", "== 3")) == ["test_add"]
    assert changed_tests(BASE_TEST, "def broken(:\n") == []


@needs_data
def test_real_mini_swe_agent_trajectories() -> None:
    [requests] = [
        t
        for t in harvest_from_trajectory(MINI / "psf__requests-1142.traj.json", "psf__requests-1142")
        if "reproduce_issue.py" in t.command
    ]
    assert requests.command == "cd /testbed && python3 reproduce_issue.py"
    assert "requests.Request('GET', 'http://amazon.com')" in requests.files["/testbed/reproduce_issue.py"]
    everything = harvest_from_trajectory(MINI / "psf__requests-1142.traj.json", "psf__requests-1142")
    assert not any("apply_fix" in t.command for t in everything)  # it rewrote requests/models.py
    sphinx = harvest_from_trajectory(MINI / "sphinx-doc__sphinx-9461.traj.json", "sphinx-doc__sphinx-9461")
    build = next(t for t in sphinx if "sphinx.cmd.build -b html docs docs/_build " in t.command + " ")
    assert set(build.files) >= {
        "/testbed/docs/conf.py",
        "/testbed/docs/index.rst",
        "/testbed/reproduction.py",
    }
    ids = sorted(p.name.removesuffix(".traj.json") for p in MINI.glob("*.traj.json"))
    with_tests = [i for i in ids if harvest_from_trajectory(MINI / f"{i}.traj.json", i)]
    assert len(ids) == 119 and len(with_tests) >= 113
