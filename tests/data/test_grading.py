"""Grading with the official parsers and rules, on logs in each parser's format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchfleet.data.grading import grade, parser_name, wrap_test_output
from patchfleet.data.loaders import load_tasks
from patchfleet.data.task import EvalSpec

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SPEC = EvalSpec(
    instance_id="o__r-1", test_patch="", fail_to_pass=("t.py::test_fix",), pass_to_pass=("t.py::test_old",)
)


def test_pytest_log_resolves_only_when_every_listed_test_passes():
    passing = wrap_test_output("PASSED t.py::test_fix\nPASSED t.py::test_old\n", 0)
    report = grade(passing, SPEC, repo="pytest-dev/pytest")["o__r-1"]
    assert report["resolved"] and report["patch_successfully_applied"]
    broken = wrap_test_output("PASSED t.py::test_fix\nFAILED t.py::test_old - AssertionError\n", 1)
    report = grade(broken, SPEC, repo="pytest-dev/pytest")["o__r-1"]
    assert not report["resolved"]
    assert report["tests_status"]["PASS_TO_PASS"]["failure"] == ["t.py::test_old"]


def test_a_log_without_test_output_is_not_resolved():
    assert not grade("collection error\n", SPEC, repo="pytest-dev/pytest")["o__r-1"]["resolved"]


def test_sympy_format_uses_the_sympy_parser():
    spec = EvalSpec(
        instance_id="sympy__sympy-1", test_patch="", fail_to_pass=("test_new",), pass_to_pass=("test_old",)
    )
    assert parser_name("sympy/sympy") == "parse_log_sympy"
    log = wrap_test_output("test_new ok\ntest_old ok\n", 0)
    assert grade(log, spec, repo="sympy/sympy")["sympy__sympy-1"]["resolved"]
    log = wrap_test_output("test_new F\ntest_old ok\n", 1)
    assert not grade(log, spec, repo="sympy/sympy")["sympy__sympy-1"]["resolved"]


def test_exit_code_contradicting_an_all_pass_log_is_not_trusted():
    lying = wrap_test_output("PASSED t.py::test_fix\nPASSED t.py::test_old\n", 1)
    assert not grade(lying, SPEC, repo="pytest-dev/pytest")["o__r-1"]["resolved"]


@pytest.mark.realdata
def test_real_instances_grade_resolved_when_all_their_tests_pass_in_pytest_format():
    path = SHARED / "swebench_verified.jsonl"
    if not path.exists():
        pytest.skip("../shared/data is not beside the project")
    dev = (SHARED / "splits" / "dev_ids.txt").read_text().split()
    loaded = load_tasks(path, instance_ids=[i for i in dev if i.startswith(("pytest-dev", "psf", "pylint"))])
    assert loaded.tasks
    for task in loaded.tasks[:6]:
        spec = loaded.eval_specs[task.id]
        tests = [*spec.fail_to_pass, *spec.pass_to_pass]
        good = wrap_test_output("".join(f"PASSED {name}\n" for name in tests), 0)
        assert grade(good, spec, repo=task.repo)[task.id]["resolved"], task.id
        bad = wrap_test_output(
            "".join(f"{'FAILED' if i == 0 else 'PASSED'} {name}\n" for i, name in enumerate(tests)), 1
        )
        assert not grade(bad, spec, repo=task.repo)[task.id]["resolved"], json.dumps(tests[:2])
