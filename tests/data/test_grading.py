"""Grading with the official parsers and rules, on logs in each parser's format."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchfleet.data.grading import (
    grade,
    parse_test_log,
    parser_name,
    resolution_status,
    summarize,
    wrap_test_output,
)
from patchfleet.data.loaders import load_tasks, read_ids
from patchfleet.data.task import EvalSpec
from patchfleet.errors import ConfigError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SPEC = EvalSpec(
    instance_id="o__r-1", test_patch="", fail_to_pass=("t.py::test_fix",), pass_to_pass=("t.py::test_old",)
)


def status(log: str, spec: EvalSpec, repo: str) -> str:
    return resolution_status(grade(log, spec, repo=repo))


def test_parsers_are_the_official_ones_by_repo():
    assert parser_name("psf/requests") == "parse_log_requests"
    assert parser_name("pydata/xarray") == "parse_log_xarray"
    assert parser_name("sphinx-doc/sphinx") == "parse_log_sphinx"
    assert parser_name("django/django") == "parse_log_django"
    assert parser_name("someone/unknown") == "parse_log_pytest"
    with pytest.raises(ConfigError, match="unknown log parser"):
        parse_test_log("", "o/r", parser="parse_log_nothing")


def test_pytest_log_resolves_only_when_every_listed_test_passes():
    passing = wrap_test_output("PASSED t.py::test_fix\nPASSED t.py::test_old\n", 0)
    report = grade(passing, SPEC, repo="pytest-dev/pytest")["o__r-1"]
    assert report["resolved"] and report["patch_successfully_applied"] and report["patch_exists"]
    assert resolution_status(report) == "RESOLVED_FULL"
    broken = wrap_test_output("PASSED t.py::test_fix\nFAILED t.py::test_old - AssertionError\n", 1)
    report = grade(broken, SPEC, repo="pytest-dev/pytest")["o__r-1"]
    assert not report["resolved"] and resolution_status(report) == "RESOLVED_NO"
    assert report["tests_status"]["PASS_TO_PASS"]["failure"] == ["t.py::test_old"]
    skipped_fix = wrap_test_output("SKIPPED t.py::test_fix\nSKIPPED t.py::test_old\n", 0)
    assert status(skipped_fix, SPEC, "pytest-dev/pytest") == "RESOLVED_NO"  # a skipped F2P is no fix


def test_partial_resolution_and_a_missing_patch():
    spec = SPEC.model_copy(update={"fail_to_pass": ("t.py::a", "t.py::b")})
    log = wrap_test_output("PASSED t.py::a\nFAILED t.py::b\nPASSED t.py::test_old\n", 1)
    assert status(log, spec, "pydata/xarray") == "RESOLVED_PARTIAL"
    report = grade(log, spec, repo="pydata/xarray", model_patch=None)["o__r-1"]
    assert report["patch_is_None"] and not report["patch_exists"] and not report["resolved"]


def test_a_log_without_test_output_or_with_a_failure_marker_is_not_resolved():
    assert not grade("collection error\n", SPEC, repo="pytest-dev/pytest")["o__r-1"]["resolved"]
    timed_out = (
        wrap_test_output("PASSED t.py::test_fix\nPASSED t.py::test_old\n", 0) + ">>>>> Tests Timed Out\n"
    )
    assert not grade(timed_out, SPEC, repo="pytest-dev/pytest")["o__r-1"]["patch_successfully_applied"]


def test_exit_code_contradicting_an_all_pass_log_is_not_trusted():
    lying = wrap_test_output("PASSED t.py::test_fix\nPASSED t.py::test_old\n", 1)
    assert not grade(lying, SPEC, repo="pytest-dev/pytest")["o__r-1"]["resolved"]


def test_option_ids_in_requests_and_verbose_pytest_in_sphinx():
    spec = EvalSpec(instance_id="psf__requests-1", test_patch="", fail_to_pass=("t.py::test_a[/b]",))
    log = wrap_test_output("PASSED t.py::test_a[/tmp/x/b]\n", 0)
    assert parse_test_log(log, "psf/requests") == {"t.py::test_a[/b]": "PASSED"}
    assert status(wrap_test_output("PASSED t.py::test_a[/y/b]\n", 0), spec, "psf/requests") == "RESOLVED_FULL"
    sphinx = EvalSpec(instance_id="sphinx-doc__sphinx-1", test_patch="", fail_to_pass=("tests/t.py::test_x",))
    verbose = "tests/t.py::test_x PASSED\n"  # an older pytest's -v line, status last
    assert parse_test_log(verbose, "sphinx-doc/sphinx") == {"tests/t.py::test_x": "PASSED"}
    assert status(wrap_test_output(verbose, 0), sphinx, "sphinx-doc/sphinx") == "RESOLVED_FULL"


def test_django_format():
    spec = EvalSpec(
        instance_id="django__django-1",
        test_patch="",
        fail_to_pass=("test_new (auth.tests.T)",),
        pass_to_pass=("test_old (auth.tests.T)", "test_slow (auth.tests.T)"),
    )
    assert parser_name("django/django") == "parse_log_django"
    log = (
        "test_new (auth.tests.T) ... ok\ntest_old (auth.tests.T) ... ok\n"
        "test_slow (auth.tests.T) ... skipped 'x'\n"
    )
    assert status(wrap_test_output(log, 0), spec, "django/django") == "RESOLVED_FULL"  # a skipped P2P is kept
    failing = log.replace("test_new (auth.tests.T) ... ok", "test_new (auth.tests.T) ... FAIL")
    assert status(wrap_test_output(failing, 1), spec, "django/django") == "RESOLVED_NO"


def test_sympy_format_uses_the_sympy_parser():
    spec = EvalSpec(
        instance_id="sympy__sympy-1", test_patch="", fail_to_pass=("test_new",), pass_to_pass=("test_old",)
    )
    assert parser_name("sympy/sympy") == "parse_log_sympy"
    log = wrap_test_output("test_new ok\ntest_old ok\n", 0)
    assert grade(log, spec, repo="sympy/sympy")["sympy__sympy-1"]["resolved"]
    log = wrap_test_output("test_new F\ntest_old ok\n", 1)
    assert not grade(log, spec, repo="sympy/sympy")["sympy__sympy-1"]["resolved"]
    log = wrap_test_output("test_new E\ntest_old ok\n", 1)
    assert parse_test_log(log, "sympy/sympy") == {"test_new": "ERROR", "test_old": "PASSED"}


def test_seaborn_format_and_plain_logs_without_markers():
    assert parse_test_log(
        "tests/t.py::test_a PASSED [ 50%]\nFAILED tests/t.py::test_b\n", "mwaskom/seaborn"
    ) == {
        "tests/t.py::test_a": "PASSED",
        "tests/t.py::test_b": "FAILED",
    }


def test_summary_has_the_official_shape():
    reports = {
        "a": {"resolved": True, "patch_exists": True},
        "b": {"resolved": False, "patch_exists": True},
    }
    summary = summarize(
        reports,
        {"a", "b", "c", "e"},
        {"c": "PatchApplyError: no method applies"},
        dataset_ids=["a", "b", "c", "d", "e"],
        empty_patch_ids=["e"],
        logs={"b": "E   ModuleNotFoundError: No module named 'numpy'\n"},
    )
    official_keys = [
        "total_instances",
        "submitted_instances",
        "completed_instances",
        "resolved_instances",
        "unresolved_instances",
        "infra_failure_instances",
        "ambiguous_failure_instances",
        "empty_patch_instances",
        "error_instances",
        "completed_ids",
        "incomplete_ids",
        "empty_patch_ids",
        "submitted_ids",
        "resolved_ids",
        "unresolved_ids",
        "infra_failure_ids",
        "ambiguous_failure_ids",
        "failure_reasons",
        "error_ids",
        "schema_version",
    ]
    assert [k for k in summary if k != "errors"] == official_keys
    assert summary["total_instances"] == 5 and summary["submitted_instances"] == 4
    assert summary["completed_ids"] == ["a", "b"] and summary["resolved_ids"] == ["a"]
    assert summary["incomplete_ids"] == ["d"] and summary["empty_patch_ids"] == ["e"]
    assert summary["error_ids"] == ["c"] and summary["errors"]["c"].startswith("PatchApplyError")
    assert summary["schema_version"] == 2
    assert summary["infra_failure_ids"] + summary["ambiguous_failure_ids"] == ["b"]
    assert "b" in summary["failure_reasons"]


def _dev_instances(prefixes: tuple[str, ...]):
    path = SHARED / "swebench_verified.jsonl"
    if not path.exists():
        pytest.skip("../shared/data is not beside the project")
    dev = [i for i in read_ids(SHARED / "splits" / "dev_ids.txt") if i.startswith(prefixes)]
    return load_tasks(path, instance_ids=dev)


@pytest.mark.realdata
def test_real_instances_grade_resolved_when_all_their_tests_pass_in_pytest_format():
    repos = ("psf", "pytest-dev", "pylint-dev", "sphinx-doc", "pydata", "mwaskom")
    loaded = _dev_instances(repos)
    chosen = {}
    for task in loaded.tasks:  # two instances of every repository
        if sum(t.repo == task.repo for t in chosen.values()) < 2:
            chosen[task.id] = task
    assert len({t.repo for t in chosen.values()}) == len(repos)
    for task in chosen.values():
        spec = loaded.eval_specs[task.id]
        tests = [*spec.fail_to_pass, *spec.pass_to_pass]
        good = wrap_test_output("".join(f"PASSED {name}\n" for name in tests), 0)
        assert status(good, spec, task.repo) == "RESOLVED_FULL", task.id
        for broken in (spec.fail_to_pass[0], spec.pass_to_pass[0] if spec.pass_to_pass else None):
            if broken is None:
                continue
            bad = wrap_test_output(
                "".join(f"{'FAILED' if name == broken else 'PASSED'} {name}\n" for name in tests), 1
            )
            report = grade(bad, spec, repo=task.repo)[task.id]
            assert not report["resolved"], (task.id, broken)


@pytest.mark.realdata
def test_real_sympy_instances_grade_in_sympy_format():
    loaded = _dev_instances(("sympy",))
    for task in loaded.tasks[:3]:
        spec = loaded.eval_specs[task.id]
        tests = [*spec.fail_to_pass, *spec.pass_to_pass]
        good = wrap_test_output("".join(f"{name} ok\n" for name in tests), 0)
        assert status(good, spec, task.repo) == "RESOLVED_FULL", task.id
        bad = wrap_test_output("".join(f"{n} {'F' if n == tests[0] else 'ok'}\n" for n in tests), 1)
        assert status(bad, spec, task.repo) != "RESOLVED_FULL", task.id
