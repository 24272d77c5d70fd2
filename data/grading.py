"""Verdicts from test logs, by the official SWE-bench rules and parsers (the `swebench` package).

Pure functions: a log and an `EvalSpec` in, the official per-instance report out; reports in, the
official run summary out. The log must use the harness's markers (`>>>>> Start Test Output` ...
`>>>>> End Test Output`, then `>>>>> Test Exit Code: N`), which `wrap_test_output()` writes around a test
command's output and `evalscript.eval_script()` makes the test script print itself.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from swebench.harness.constants import (
    END_TEST_OUTPUT,
    START_TEST_OUTPUT,
    TEST_EXIT_CODE,
    EvalType,
    ResolvedStatus,
)
from swebench.harness.grading import get_eval_report, get_resolution_status
from swebench.harness.infra_failure import TIER_ENVIRONMENT, classify_text
from swebench.harness.log_parsers import PARSER_REGISTRY
from swebench.harness.log_parsers.python import MAP_REPO_TO_PARSER_PY
from swebench.types import TestSpec

from patchfleet.data.task import EvalSpec
from patchfleet.errors import ConfigError

DEFAULT_PARSER = "parse_log_pytest"
SCHEMA_VERSION = 2  # of the official run report (swebench/harness/reporting.py)


def parser_name(repo: str) -> str:
    """The registry name of the official log parser for `repo` (pytest's for unknown repositories)."""
    parser = MAP_REPO_TO_PARSER_PY.get(repo)
    if parser is None:
        return DEFAULT_PARSER
    # several names alias one function (parse_log_xarray is parse_log_pytest): prefer the repo's own
    own = f"parse_log_{repo.split('/')[1].split('-')[0].lower()}"
    if PARSER_REGISTRY.get(own) is parser:
        return own
    for name, candidate in PARSER_REGISTRY.items():
        if candidate is parser:
            return name
    raise ConfigError(f"the swebench package has no registry name for the parser of {repo}")


def wrap_test_output(output: str, exit_code: int) -> str:
    """A test command's output wrapped the way the official eval script wraps it."""
    return f"{START_TEST_OUTPUT}\n{output}\n{END_TEST_OUTPUT}\n{TEST_EXIT_CODE}: {exit_code}\n"


def parse_test_log(log: str, repo: str, *, parser: str | None = None) -> dict[str, str]:
    """test name -> PASSED/FAILED/SKIPPED/ERROR/XFAIL, by the repo's official parser.

    Only the part between the markers is read when they are present (as the harness does); a log
    without markers is parsed whole, so that plain test output (e.g. regression runs at the base
    commit) can use the same parsers.
    """
    name = parser or parser_name(repo)
    if name not in PARSER_REGISTRY:
        raise ConfigError(f"unknown log parser {name!r}")
    if START_TEST_OUTPUT in log and END_TEST_OUTPUT in log:
        log = log.split(START_TEST_OUTPUT, 1)[1].split(END_TEST_OUTPUT, 1)[0]
    return PARSER_REGISTRY[name](log, _test_spec("", repo, "", (), (), name))


def _test_spec(
    instance_id: str, repo: str, version: str, f2p: Iterable[str], p2p: Iterable[str], parser: str
) -> TestSpec:
    return TestSpec(
        instance_id=instance_id,
        image="",
        eval_script_list=[],
        repo=repo,
        version=version,
        FAIL_TO_PASS=list(f2p),
        PASS_TO_PASS=list(p2p),
        log_parser=parser,
        eval_type=EvalType.PASS_AND_FAIL.value,
    )


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
    """The official report.json content for one instance: `{instance_id: {resolved, tests_status, ...}}`."""
    test_spec = _test_spec(
        spec.instance_id, repo, version, spec.fail_to_pass, spec.pass_to_pass, parser or parser_name(repo)
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


def resolution_status(report: dict[str, Any]) -> str:
    """RESOLVED_FULL / RESOLVED_PARTIAL / RESOLVED_NO of one instance's report (either nesting level)."""
    if len(report) == 1 and isinstance(next(iter(report.values())), dict) and "resolved" not in report:
        report = next(iter(report.values()))
    if "tests_status" not in report:  # no parseable test output: nothing was resolved
        return ResolvedStatus.NO.value
    return get_resolution_status(report["tests_status"])


def summarize(
    reports: Mapping[str, dict[str, Any]],
    submitted: set[str],
    errors: Mapping[str, str],
    *,
    dataset_ids: Iterable[str] | None = None,
    empty_patch_ids: Iterable[str] = (),
    logs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The run summary, in the shape of the official `make_run_report` (schema_version 2).

    `reports` are per-instance reports (the inner dicts), `submitted` the ids with a prediction,
    `errors` the instances that could not be evaluated (with why: kept under `errors`, our addition),
    `dataset_ids` every instance of the dataset (default: the submitted ones), `empty_patch_ids` those
    whose prediction was empty (not run, as the harness does), `logs` test logs used to classify why
    unresolved or failed instances failed (`infra_failure_ids` / `ambiguous_failure_ids`).
    """
    dataset = set(dataset_ids) if dataset_ids is not None else set(submitted) | set(errors)
    empty = set(empty_patch_ids) & set(submitted)
    completed = set(reports)  # the harness: an instance is completed when its report.json exists
    resolved = {i for i, r in reports.items() if r.get("resolved")}
    unresolved = set(reports) - resolved
    error_ids = set(errors) - set(reports) - empty
    infra: set[str] = set()
    ambiguous: set[str] = set()
    reasons: dict[str, str] = {}
    for instance_id in unresolved | error_ids:
        text = (logs or {}).get(instance_id)
        classified = classify_text(text) if text else None
        if classified is None:
            continue
        reason, tier = classified
        reasons[instance_id] = reason
        (infra if tier == TIER_ENVIRONMENT else ambiguous).add(instance_id)
    return {
        "total_instances": len(dataset),
        "submitted_instances": len(submitted),
        "completed_instances": len(completed),
        "resolved_instances": len(resolved),
        "unresolved_instances": len(unresolved),
        "infra_failure_instances": len(infra),
        "ambiguous_failure_instances": len(ambiguous),
        "empty_patch_instances": len(empty),
        "error_instances": len(error_ids),
        "completed_ids": sorted(completed),
        "incomplete_ids": sorted(dataset - set(submitted)),
        "empty_patch_ids": sorted(empty),
        "submitted_ids": sorted(submitted),
        "resolved_ids": sorted(resolved),
        "unresolved_ids": sorted(unresolved),
        "infra_failure_ids": sorted(infra),
        "ambiguous_failure_ids": sorted(ambiguous),
        "failure_reasons": dict(sorted(reasons.items())),
        "error_ids": sorted(error_ids),
        "errors": dict(sorted(errors.items())),
        "schema_version": SCHEMA_VERSION,
    }
