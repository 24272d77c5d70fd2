"""Regression tests: the repository's own tests near the changed code that pass at the base commit.

Found by running them, never taken from a benchmark's hidden test lists: test files named after a changed
module (`test_<mod>.py`), files that import a changed module, and the tests folder of its package, each
file run once at the base commit within a time budget. The tests that pass there become one
`TestCase` per file, whose command runs exactly those node ids, with the file's base content attached so
every candidate is judged by the same tests.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass

from patchfleet.errors import SandboxError
from patchfleet.sandbox.base import REPO_DIR, Sandbox
from patchfleet.selection.harvest import is_test_path
from patchfleet.selection.model import Contract, TestCase, TestKind

DEFAULT_BUDGET_S = 300.0
MAX_FILES = 8
FILE_TIMEOUT_S = 180.0  # one test file at the base commit; slower files are not worth their votes
_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONWARNINGS": "ignore"}

PYTEST_RUN = "python -m pytest -p no:cacheprovider -rA {targets}"
SYMPY_RUN = "python bin/test -C --verbose {targets}"

# -rA's short summary: "PASSED tests/test_x.py::test_a", "FAILED tests/test_x.py::test_b - AssertionError"
_PYTEST_LINE = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS|SKIPPED)\s+(\S+?::.+?)(?:\s+-\s.*)?$")
_SYMPY_FILE = re.compile(r"^(\S+\.py)\[\d+\]")
_SYMPY_TEST = re.compile(r"^(test_\w+)\s+(ok|F|E|f|X|s|Skipped|w)\b")


@dataclass(frozen=True)
class FileRun:
    """One test file run at the base commit."""

    path: str
    passed: tuple[str, ...]  # node ids (pytest) or test names (sympy)
    failed: tuple[str, ...]
    duration: float
    timed_out: bool = False


def discover_regression_tests(
    sandbox: Sandbox,
    changed_files: Iterable[str],
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    runner: str = "pytest",
    instance_id: str = "",
    max_files: int = MAX_FILES,
    workdir: str | None = None,
) -> list[TestCase]:
    """REGRESSION tests (PASS_FAIL) for the files a set of candidates changes, found in `sandbox` at the
    base commit. `runner` is "pytest", "sympy" (its `bin/test`) or "auto" (sympy's runner when the
    repository has `bin/test` and no pytest). Stops starting files once `budget_s` is spent.
    The sandbox is left with the test run's leftovers: reset it before reusing it for a candidate."""
    started = time.monotonic()
    workdir = workdir or sandbox.spec.workdir or REPO_DIR
    changed = [p for p in changed_files if p.endswith(".py")]
    if not changed:
        return []
    if runner == "auto":
        runner = detect_runner(sandbox, workdir)
    files = find_test_files(sandbox, changed, workdir=workdir)[:max_files]
    tests = []
    for path in files:
        remaining = budget_s - (time.monotonic() - started)
        if remaining <= 5:
            break
        run = run_test_file(
            sandbox, path, runner=runner, timeout=min(FILE_TIMEOUT_S, remaining), workdir=workdir
        )
        if run.timed_out or not run.passed:
            continue
        test = regression_test(sandbox, run, runner=runner, instance_id=instance_id, workdir=workdir)
        if test is not None:
            tests.append(test)
    return tests


def detect_runner(sandbox: Sandbox, workdir: str = REPO_DIR) -> str:
    probe = sandbox.exec(
        "test -x bin/test && ! python -c 'import pytest' 2>/dev/null && echo sympy || echo pytest",
        timeout=60,
        cwd=workdir,
    )
    return "sympy" if probe.output.strip().endswith("sympy") else "pytest"


def find_test_files(sandbox: Sandbox, changed: list[str], *, workdir: str = REPO_DIR) -> list[str]:
    """Test files near the changed ones, most specific first: named after a changed module in its
    package's tests folder, importing it, named after it elsewhere, then the package's tests folder.
    `changed` comes most important first (e.g. by how many candidates change each file)."""
    listing = sandbox.exec("git ls-files -- '*.py'", timeout=60, cwd=workdir)
    tracked = [line for line in listing.output.splitlines() if line.endswith(".py")]
    tests = [p for p in tracked if is_test_path(p) and _is_test_module(p)]
    named: list[str] = []
    named_elsewhere: list[str] = []
    near: list[str] = []
    patterns: list[str] = []
    for path in changed:
        if is_test_path(path):
            named.append(path)  # a changed test file: its base version is a regression test too
            continue
        module = posixpath.splitext(posixpath.basename(path))[0]
        if module == "__init__":
            module = posixpath.basename(posixpath.dirname(path))
        package = posixpath.dirname(path)
        for test in tests:
            if posixpath.basename(test) in (f"test_{module}.py", f"{module}_test.py"):
                (named if _in_tests_of(test, package) else named_elsewhere).append(test)
        near += [p for p in tests if _in_tests_of(p, package)]
        dotted = _dotted(path)
        if dotted:
            patterns.append(_import_pattern(dotted))
    importing: list[str] = []
    if patterns and tests:
        grep = sandbox.exec(
            "git grep -l -E "
            + shlex.quote("|".join(patterns))
            + " -- "
            + " ".join(shlex.quote(p) for p in tests[:5000]),
            timeout=120,
            cwd=workdir,
        )
        importing = [line for line in grep.output.splitlines() if line in tests]
    ranked = []
    for path in [*named, *importing, *named_elsewhere, *near]:
        if path not in ranked and path in tracked:
            ranked.append(path)
    return ranked


def _is_test_module(path: str) -> bool:
    name = posixpath.basename(path)
    return name.startswith("test_") or name.endswith("_test.py") or name == "tests.py"


def _in_tests_of(path: str, package: str) -> bool:
    """`path` is in the tests folder of `package` or of its parent (pkg/tests, pkg/../tests)."""
    folder = posixpath.dirname(path)
    candidates = {posixpath.join(package, "tests"), posixpath.join(package, "test")}
    parent = posixpath.dirname(package)
    candidates |= {posixpath.join(parent, "tests"), posixpath.join(parent, "test")} if parent else {"tests"}
    return folder in candidates


def _dotted(path: str) -> str:
    parts = path[:-3].split("/")
    if parts[0] in ("src", "lib") and len(parts) > 1:
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) if parts and all(p.isidentifier() for p in parts) else ""


def _import_pattern(dotted: str) -> str:
    """An extended regex (git grep -E) for `import a.b.c`, `from a.b.c import x`, `from a.b import c`."""
    head, _, last = dotted.rpartition(".")
    pattern = rf"(from|import)[[:space:]]+{re.escape(dotted)}([^[:alnum:]_]|$)"
    if head:
        pattern += (
            rf"|from[[:space:]]+{re.escape(head)}[[:space:]]+import.*[^[:alnum:]_]{last}([^[:alnum:]_]|$)"
        )
    return pattern


def run_test_file(
    sandbox: Sandbox,
    path: str,
    *,
    runner: str = "pytest",
    timeout: float = FILE_TIMEOUT_S,
    workdir: str = REPO_DIR,
) -> FileRun:
    """Run one test file at the base commit and read each test's outcome from the output."""
    template = SYMPY_RUN if runner == "sympy" else PYTEST_RUN
    result = sandbox.exec(template.format(targets=shlex.quote(path)), timeout=timeout, cwd=workdir, env=_ENV)
    outcomes = parse_sympy(result.output) if runner == "sympy" else parse_pytest(result.output)
    passed = tuple(t for t, ok in outcomes.items() if ok)
    failed = tuple(t for t, ok in outcomes.items() if not ok)
    return FileRun(path, passed, failed, result.duration, result.timed_out)


def parse_pytest(output: str) -> dict[str, bool]:
    """Node id -> passed, from pytest's -rA summary (skips and xfails are neither: left out)."""
    outcomes: dict[str, bool] = {}
    for line in output.splitlines():
        match = _PYTEST_LINE.match(line.strip())
        if not match:
            continue
        status, node = match.groups()
        if status in ("PASSED", "XPASS"):
            outcomes.setdefault(node, True)
        elif status in ("FAILED", "ERROR"):
            outcomes[node] = False  # an error in teardown follows a PASSED line for the same test
    return outcomes


def parse_sympy(output: str) -> dict[str, bool]:
    """`file::test` -> passed, from `bin/test --verbose` (a file line, then one line per test)."""
    outcomes: dict[str, bool] = {}
    current = ""
    for line in output.splitlines():
        header = _SYMPY_FILE.match(line.strip())
        if header:
            current = header.group(1)
            continue
        match = _SYMPY_TEST.match(line.strip())
        if match and current:
            name, status = match.groups()
            if status in ("ok", "F", "E"):
                outcomes[f"{current}::{name}"] = status == "ok"
    return outcomes


def regression_test(
    sandbox: Sandbox, run: FileRun, *, runner: str, instance_id: str, workdir: str = REPO_DIR
) -> TestCase | None:
    """One TestCase for the tests of `run` that passed, with the file's base content attached."""
    try:
        content = sandbox.read_file(posixpath.join(workdir, run.path)).decode("utf-8")
    except (OSError, UnicodeDecodeError, SandboxError):  # gone or unreadable: no test from it
        return None
    if runner == "sympy":
        names = _sympy_names(run)
        if not names:
            return None
        command = SYMPY_RUN.format(targets=" ".join([shlex.quote(run.path), "-k", *map(shlex.quote, names)]))
    else:
        command = PYTEST_RUN.format(targets=" ".join(shlex.quote(n) for n in _pytest_targets(run)))
    return TestCase.make(
        instance_id=instance_id,
        kind=TestKind.REGRESSION,
        contract=Contract.PASS_FAIL,
        command=f"cd {shlex.quote(workdir)} && {command}",
        files={posixpath.join(workdir, run.path): content},
        origin=f"regression: {run.path} ({len(run.passed)} passed, {len(run.failed)} failed at base)",
        timeout=max(60.0, 3 * run.duration),
    )


def _pytest_targets(run: FileRun) -> list[str]:
    """Passing node ids, grouped back to whole functions where every parameter of one passed (function
    ids re-select reliably; some parameter ids do not)."""
    failing_functions = {n.split("[", 1)[0] for n in run.failed}
    targets: list[str] = []
    for node in run.passed:
        function = node.split("[", 1)[0]
        target = node if function in failing_functions else function
        if target not in targets:
            targets.append(target)
    return targets


def _sympy_names(run: FileRun) -> list[str]:
    """Names for `bin/test -k`, which runs every test whose name contains one of them (case-insensitive
    in newer sympy): a passing name is kept only if no failing test's name contains it."""
    failing = [n.rsplit("::", 1)[-1].lower() for n in run.failed]
    names = [n.rsplit("::", 1)[-1] for n in run.passed]
    return [n for n in names if not any(n.lower() in f for f in failing)]
