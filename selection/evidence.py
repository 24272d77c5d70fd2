"""What the recorded results say about each candidate, computed once for every policy to weigh.

Each test plays one role, decided from its kind, its contract and the BASE row of the matrix alone:
a *regression* test (passes at base; a candidate that fails it broke something), a *reproduction* test
(exit-code contract saying "not fixed" (2) at base, or a non-regression pass/fail test failing at base;
a candidate passes it with exit code 0; a candidate-added pass/fail test that passes at base serves as a
regression test), or a *behaviour* test (prints only: candidates that change the
base's output in the same way form a cluster, whose size is its vote; one that fails at base also counts
as a reproduction test that a candidate passes by exiting 0). A test that does not reproduce
at base, or has no usable base run, says nothing and is ignored. Infrastructure errors are missing
cells, never verdicts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from patchfleet.selection.model import (
    BASE,
    Candidate,
    CandidateFlag,
    Cell,
    Contract,
    SelectionInputs,
    TestCase,
    TestKind,
)
from patchfleet.selection.normalize import change_shape
from patchfleet.selection.outputs import behaviour_hash

NOT_FIXED = 2  # the exit-code contract: 0 fixed, 2 not fixed, anything else an error


@dataclass
class CandidateEvidence:
    """The numbers one candidate earned; policies read these and nothing else."""

    id: str
    size: int  # changed lines
    sources: int  # how many trajectories / submissions proposed it
    applies: bool
    parses: bool
    group: str  # ast_key when known, else the id: formatting-only variants share a group
    group_size: int = 1  # distinct candidates in the group
    group_support: int = 1  # sources of the group's candidates
    regression_run: int = 0
    regression_failures: int = 0
    generated_passed: int = 0  # reproducing generated tests passed
    other_passed: int = 0  # reproducing harvested / candidate-added tests with a pass/fail outcome passed
    behaviour_changed: int = 0  # behaviour tests whose base output it changes without breaking the script
    behaviour_votes: int = 0  # sum over behaviour tests of its cluster's size (distinct candidates)
    behaviour_support: float = 0.0  # mean over behaviour tests of its cluster's share of all sources
    verifier: float | None = None
    # share of the other proposals' changes it shares: for each other source, the similarity of the two
    # patches' shapes (files, changed lines); its own other sources count as full agreement
    consensus: float = 0.0

    @property
    def regression_passed(self) -> int:
        return self.regression_run - self.regression_failures

    @property
    def reproduction_passed(self) -> int:
        return self.generated_passed + self.other_passed


@dataclass
class Evidence:
    """Per candidate evidence plus the counts that give it a scale."""

    candidates: dict[str, CandidateEvidence]
    generated_tests: int = 0  # reproducing generated tests
    other_tests: int = 0  # reproducing harvested / candidate-added pass/fail tests
    behaviour_tests: int = 0  # behaviour tests in which at least one candidate changed the output
    regression_tests: int = 0
    total_support: int = 0  # sources of all candidates that apply
    clusters: dict[str, dict[str, str]] = field(default_factory=dict)  # test id -> candidate -> label

    @property
    def reproduction_tests(self) -> int:
        return self.generated_tests + self.other_tests


def gather(inputs: SelectionInputs) -> Evidence:
    """Evidence for every candidate of `inputs` (only candidates that apply take part in votes)."""
    matrix = inputs.matrix
    base = matrix.row(BASE)
    rows = {c.id: matrix.row(c.id) for c in inputs.candidates}
    evidence = Evidence(candidates={c.id: _blank(c, inputs) for c in inputs.candidates})
    voters = [c for c in inputs.candidates if evidence.candidates[c.id].applies]
    evidence.total_support = sum(evidence.candidates[c.id].sources for c in voters)
    _groups(evidence, voters)
    _consensus(evidence, voters)
    for test in inputs.tests:
        base_cell = base.get(test.id)
        if test.kind == TestKind.REGRESSION:
            _regression(evidence, test, base_cell, voters, rows)
        elif test.contract == Contract.BEHAVIOUR:
            _behaviour(evidence, test, base_cell, voters, rows)
        else:
            _reproduction(evidence, test, base_cell, voters, rows)
    return _finish(evidence)


def _blank(candidate: Candidate, inputs: SelectionInputs) -> CandidateEvidence:
    score = inputs.verifier.get(candidate.id)
    return CandidateEvidence(
        id=candidate.id,
        size=candidate.size,
        sources=max(1, len(candidate.sources)),
        applies=candidate.usable,
        parses=CandidateFlag.SYNTAX_ERROR not in candidate.flags,
        group=candidate.ast_key or candidate.id,
        verifier=score.score if score is not None else None,
    )


def _groups(evidence: Evidence, voters: list[Candidate]) -> None:
    size: Counter[str] = Counter()
    support: Counter[str] = Counter()
    for candidate in voters:
        found = evidence.candidates[candidate.id]
        size[found.group] += 1
        support[found.group] += found.sources
    for found in evidence.candidates.values():
        found.group_size = size.get(found.group, 1)
        found.group_support = support.get(found.group, found.sources)


def _consensus(evidence: Evidence, voters: list[Candidate]) -> None:
    """Minimum-Bayes-risk consensus: independent systems that fix an issue tend to change the same lines
    in the same files, while wrong fixes scatter, so the candidate closest to all others is a good bet even
    when no two patches are identical (the AST majority then has nothing to count)."""
    shapes = {c.id: change_shape(c.patch) for c in voters}
    others = max(1, evidence.total_support - 1)
    for candidate in voters:
        found = evidence.candidates[candidate.id]
        agreement = float(found.sources - 1)
        for other in voters:
            if other.id != candidate.id:
                similarity = shapes[candidate.id].similarity(shapes[other.id])
                agreement += evidence.candidates[other.id].sources * similarity
        found.consensus = agreement / others


def _ran(cell: Cell | None) -> bool:
    """A cell that is a verdict: it ran, and no infrastructure error or unapplied patch stopped it."""
    return cell is not None and cell.error is None and (cell.exit_code is not None or cell.timed_out)


def _passed(cell: Cell) -> bool:
    return cell.exit_code == 0 and not cell.timed_out


def _authored(test: TestCase, candidate_id: str) -> bool:
    # a test a candidate added to the repository proves nothing about that candidate itself
    return test.kind == TestKind.CANDIDATE and candidate_id in test.origin


def _regression(evidence: Evidence, test, base_cell, voters, rows) -> None:
    if base_cell is not None and _ran(base_cell) and not _passed(base_cell):
        return  # fails at base already: not a regression test after all
    evidence.regression_tests += 1
    for candidate in voters:
        cell = rows[candidate.id].get(test.id)
        if _ran(cell) and not _authored(test, candidate.id):
            found = evidence.candidates[candidate.id]
            found.regression_run += 1
            found.regression_failures += not _passed(cell)


def _reproduction(evidence: Evidence, test, base_cell, voters, rows) -> None:
    if not _ran(base_cell):
        return  # without a base run nobody knows whether it reproduces the issue
    if test.contract == Contract.EXIT_CODE:
        reproduces = base_cell.exit_code == NOT_FIXED and not base_cell.timed_out
    elif _passed(base_cell):
        # a test a candidate added that passes at base checks behaviour the fix should keep: a candidate
        # that fails it broke something, as with a repository test
        _regression(evidence, test, base_cell, voters, rows)
        return
    else:
        reproduces = True
    if not reproduces:
        return
    generated = test.kind == TestKind.GENERATED
    if generated:
        evidence.generated_tests += 1
    else:
        evidence.other_tests += 1
    for candidate in voters:
        cell = rows[candidate.id].get(test.id)
        if _ran(cell) and _passed(cell) and not _authored(test, candidate.id):
            found = evidence.candidates[candidate.id]
            if generated:
                found.generated_passed += 1
            else:
                found.other_passed += 1


def behaviour_label(cell: Cell) -> str:
    return f"{cell.exit_code}:{behaviour_hash(cell.output, cell.output_hash)}"


def _behaviour(evidence: Evidence, test, base_cell, voters, rows) -> None:
    if not _ran(base_cell) or base_cell.timed_out:
        return
    if base_cell.exit_code != 0:
        _crash_fixed(evidence, test, voters, rows)
    base_label = behaviour_label(base_cell)
    labels: dict[str, str] = {}
    for candidate in voters:
        cell = rows[candidate.id].get(test.id)
        if not _ran(cell) or cell.timed_out or _authored(test, candidate.id):
            continue
        label = behaviour_label(cell)
        if label == base_label:
            continue  # changes nothing the script shows
        if base_cell.exit_code == 0 and cell.exit_code != 0:
            continue  # the script ran at base and crashes now: broken, not a different behaviour
        labels[candidate.id] = label
    if not labels:
        return
    evidence.behaviour_tests += 1
    evidence.clusters[test.id] = labels
    size = Counter(labels.values())
    support: Counter[str] = Counter()
    for candidate_id, label in labels.items():
        support[label] += evidence.candidates[candidate_id].sources
    for candidate_id, label in labels.items():
        found = evidence.candidates[candidate_id]
        found.behaviour_changed += 1
        found.behaviour_votes += size[label]
        found.behaviour_support += support[label] / max(1, evidence.total_support)


def _crash_fixed(evidence: Evidence, test, voters, rows) -> None:
    """A print-only script that fails at base (most reproduce scripts end in the issue's traceback or a
    failed assert) is also a pass/fail reproduction test: a candidate under which it exits 0 passes it."""
    evidence.other_tests += 1
    for candidate in voters:
        cell = rows[candidate.id].get(test.id)
        if _ran(cell) and _passed(cell) and not _authored(test, candidate.id):
            evidence.candidates[candidate.id].other_passed += 1


def _finish(evidence: Evidence) -> Evidence:
    """Summed behaviour shares become means over the behaviour tests."""
    if evidence.behaviour_tests:
        for found in evidence.candidates.values():
            found.behaviour_support /= evidence.behaviour_tests
    return evidence
