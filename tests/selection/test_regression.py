"""Regression test discovery at the base commit: nearby tests that pass there, and only those."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from fakes.local_sandbox import LocalSandbox

from patchfleet.selection.model import Contract, TestKind
from patchfleet.selection.regression import discover_regression_tests, parse_pytest, parse_sympy

CORE = (
    "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n\n\n"
    "def div(a, b):\n    return a * b\n"
)
REPO = {
    "calc/__init__.py": "",
    "calc/core.py": CORE,
    "calc/util.py": "def double(x):\n    return 2 * x\n",
    "tests/__init__.py": "",
    "tests/test_core.py": (
        "import pytest\n\nfrom calc.core import add, div, mul\n\n\n"
        "def test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_mul():\n    assert mul(2, 3) == 6\n\n\n"
        "def test_div():\n    assert div(6, 3) == 2  # the bug: fails at the base commit\n\n\n"
        "@pytest.mark.parametrize('x', [1, 2, 3])\n"
        "def test_add_zero(x):\n    assert add(x, 0) == x\n\n\n"
        "@pytest.mark.parametrize('x', [0, 1])\n"
        "def test_div_self(x):\n    assert div(x, 1) == x and x != 1\n"
    ),
    "tests/test_uses_core.py": (
        "from calc import core\n\n\ndef test_square():\n    assert core.mul(3, 3) == 9\n"
    ),
    "tests/test_util.py": "from calc.util import double\n\n\ndef test_double():\n    assert double(2) == 4\n",
    "docs/test_unrelated.txt": "not a test\n",
}
BREAK_MUL = (
    "diff --git a/calc/core.py b/calc/core.py\n--- a/calc/core.py\n+++ b/calc/core.py\n"
    "@@ -4,3 +4,3 @@ def add(a, b):\n \n def mul(a, b):\n-    return a * b\n+    return a + b\n"
)


def make_repo(root: Path, run_git) -> Path:
    for path, text in REPO.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    run_git(root, "init", "-q", "-b", "main")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-qm", "base")
    return root


def test_pytest_and_sympy_outputs_parse() -> None:
    output = (
        "PASSED tests/test_a.py::test_one\nPASSED tests/test_a.py::test_p[a b]\n"
        "FAILED tests/test_a.py::TestC::test_two - AssertionError: x - y\n"
        "ERROR tests/test_a.py::test_three - fixture 'z' not found\nSKIPPED [1] tests/test_a.py:9: no\n"
        "PASSED tests/test_a.py::test_teardown\nERROR tests/test_a.py::test_teardown - boom\n"
    )
    assert parse_pytest(output) == {
        "tests/test_a.py::test_one": True,
        "tests/test_a.py::test_p[a b]": True,
        "tests/test_a.py::TestC::test_two": False,
        "tests/test_a.py::test_three": False,
        "tests/test_a.py::test_teardown": False,
    }
    sympy = "sympy/core/tests/test_basic.py[3] \ntest_structure ok\ntest_equality F\ntest_atoms E\n"
    assert parse_sympy(sympy) == {
        "sympy/core/tests/test_basic.py::test_structure": True,
        "sympy/core/tests/test_basic.py::test_equality": False,
        "sympy/core/tests/test_basic.py::test_atoms": False,
    }


def test_sympy_selection_keeps_only_names_no_failing_test_contains() -> None:
    from patchfleet.selection.regression import FileRun, _sympy_names

    run = FileRun(
        "sympy/core/tests/test_x.py",
        passed=tuple(f"sympy/core/tests/test_x.py::{n}" for n in ("test_add", "test_mul", "test_Pow")),
        failed=("sympy/core/tests/test_x.py::test_add_numbers", "sympy/core/tests/test_x.py::test_pow_big"),
        duration=1.0,
    )
    assert _sympy_names(run) == ["test_mul"]  # -k test_add would also run test_add_numbers


def check_discovery(sandbox, workdir: str) -> None:
    tests = discover_regression_tests(sandbox, ["calc/core.py"], budget_s=120, instance_id="calc-1")
    by_file = {t.origin.split()[1]: t for t in tests}
    # named after the module, importing it, then the package's tests folder
    assert list(by_file) == ["tests/test_core.py", "tests/test_uses_core.py", "tests/test_util.py"]
    core = by_file["tests/test_core.py"]
    assert core.kind == TestKind.REGRESSION and core.contract == Contract.PASS_FAIL
    assert core.instance_id == "calc-1" and "6 passed, 2 failed at base" in core.origin
    words = shlex.split(core.command)
    assert words[:2] == ["cd", workdir]
    assert words[-4:] == [
        "tests/test_core.py::test_add",
        "tests/test_core.py::test_mul",
        "tests/test_core.py::test_add_zero",  # every parameter passed: the function as a whole
        "tests/test_core.py::test_div_self[0]",  # one parameter failed: only the passing one
    ]
    assert core.files == {f"{workdir}/tests/test_core.py": REPO["tests/test_core.py"]}
    # the kept tests pass at the base commit and catch a candidate that breaks mul()
    assert sandbox.exec(core.command, timeout=120).exit_code == 0
    assert sandbox.apply_patch(BREAK_MUL).applied
    assert sandbox.exec(core.command, timeout=120).exit_code != 0
    assert sandbox.exec(by_file["tests/test_util.py"].command, timeout=120).exit_code == 0
    assert discover_regression_tests(sandbox, ["README.md"], budget_s=60) == []


def test_discovery_on_the_host_with_a_local_fake(tmp_path: Path, run_git) -> None:
    pytest.importorskip("pytest")
    repo = make_repo(tmp_path / "calc", run_git)
    sandbox = LocalSandbox(repo)
    try:
        check_discovery(sandbox, str(repo))
    finally:
        sandbox.close()


PYTEST_ENV = (
    # the evaluation tests' environment layer (same steps, same key): built once, shared
    ("python3 -m venv /opt/venv", "/opt/venv/bin/pip install --no-input -q 'pytest==8.3.3'"),
    (("PATH", "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"),),
)


@pytest.fixture(scope="module")
def pytest_image(docker_backend, base_image) -> str:
    from patchfleet.sandbox.images import EnvLayer, ImageBuilder, ImageSpec

    steps, env = PYTEST_ENV
    return ImageBuilder(docker_backend).ensure(
        ImageSpec(env=EnvLayer(key="local__calc-0.1", steps=steps, env=env))
    )


@pytest.mark.docker
def test_discovery_in_a_docker_sandbox(pytest_image, sandbox_factory) -> None:
    sandbox = sandbox_factory(pytest_image)
    for path, text in REPO.items():
        sandbox.write_file(f"/testbed/{path}", text)
    init = "git init -q -b main && git add -A && git -c user.name=t -c user.email=t@e commit -qm base"
    assert sandbox.exec(init, cwd="/testbed").ok
    check_discovery(sandbox, "/testbed")
