"""Verdicts from test logs, by the official SWE-bench rules and parsers (the `swebench` package).

Pure functions: a log and an `EvalSpec` in, the official per-instance report out. The log must use
the harness's markers (`>>>>> Start Test Output` ... `>>>>> End Test Output`, then the test exit code),
which `wrap_test_output()` writes around a test command's output.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT, TEST_EXIT_CODE, EvalType
from swebench.harness.grading import get_eval_report
from swebench.harness.log_parsers import PARSER_REGISTRY
from swebench.harness.log_parsers.python import MAP_REPO_TO_PARSER_PY
from swebench.types import TestSpec

from patchfleet.data.task import EvalSpec
from patchfleet.errors import ConfigError

DEFAULT_PARSER = "parse_log_pytest"


def parser_name(repo: str) -> str:
    """The registry name of the official log parser for `repo` (pytest's for unknown repositories)."""
    parser = MAP_REPO_TO_PARSER_PY.get(repo)
    if parser is None:
        return DEFAULT_PARSER
    for name, candidate in PARSER_REGISTRY.items():
        if candidate is parser:
            return name
    raise ConfigError(f"the swebench package has no registry name for the parser of {repo}")


def wrap_test_output(output: str, exit_code: int) -> str:
    """A test command's output wrapped the way the official eval script wraps it."""
    return f"{START_TEST_OUTPUT}\n{output}\n{END_TEST_OUTPUT}\n{TEST_EXIT_CODE}: {exit_code}\n"


def grade(
    log: str,
    spec: EvalSpec,
    *,
    repo: str,
    version: str = "",
    model_patch: str | None = "",
    model_name: str = "patchfleet",
    parser: str | None = None,
) -> dict[str, Any]:
    """The official report for one instance: `{instance_id: {resolved, tests_status, ...}}`."""
    test_spec = TestSpec(
        instance_id=spec.instance_id,
        image="",
        eval_script_list=[],
        repo=repo,
        version=version,
        FAIL_TO_PASS=list(spec.fail_to_pass),
        PASS_TO_PASS=list(spec.pass_to_pass),
        log_parser=parser or parser_name(repo),
        eval_type=EvalType.PASS_AND_FAIL.value,
    )
    prediction = {
        "instance_id": spec.instance_id,
        "model_patch": model_patch,
        "model_name_or_path": model_name,
    }
    # the official function reads the log from a file; keep that path, so verdicts cannot drift
    with tempfile.TemporaryDirectory(prefix="patchfleet-grade-") as tmp:
        path = Path(tmp) / "test_output.txt"
        path.write_text(log, encoding="utf-8", errors="replace")
        return get_eval_report(test_spec, prediction, str(path), include_tests_status=True)


def summarize(
    reports: dict[str, dict[str, Any]], submitted: set[str], errors: dict[str, str]
) -> dict[str, Any]:
    """A run summary in the shape of the official harness's final report."""
    completed = sorted(reports)
    resolved = sorted(i for i, r in reports.items() if r.get("resolved"))
    unresolved = sorted(set(completed) - set(resolved))
    empty = sorted(i for i, r in reports.items() if not r.get("patch_exists"))
    return {
        "total_instances": len(submitted | set(errors)),
        "submitted_instances": len(submitted),
        "completed_instances": len(completed),
        "resolved_instances": len(resolved),
        "unresolved_instances": len(unresolved),
        "empty_patch_instances": len(empty),
        "error_instances": len(errors),
        "completed_ids": completed,
        "resolved_ids": resolved,
        "unresolved_ids": unresolved,
        "empty_patch_ids": empty,
        "error_ids": sorted(errors),
        "errors": errors,
        "schema_version": 2,
    }
