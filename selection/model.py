"""The typed values selection works on, end to end: candidates, tests, matrix cells, verifier scores and
decisions. Everything attaches to content-hash ids (a candidate's, a test's), never to a position, so
results from several runs or machines merge and any policy re-scores offline.

Nothing here reads, or may receive, an `EvalSpec`: selection sees what a solver sees.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

BASE = "base"  # the candidate id of the unpatched base commit in a matrix


def content_hash(*parts: str, length: int = 16) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
    return digest.hexdigest()[:length]


class CandidateSource(BaseModel):
    """Where a patch came from: one trajectory of ours, or one row of someone's predictions file."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["trajectory", "predictions"]
    name: str  # the submission / model_name_or_path, or the trajectory's model
    ref: str = ""  # trajectory file, or "<predictions file>:<line>"
    trajectory: str | None = None  # a trajectory file that produced this patch, when there is one


class CandidateFlag(StrEnum):
    DOES_NOT_APPLY = "does-not-apply"  # no method of the fallback chain applies it at the base commit
    SYNTAX_ERROR = "syntax-error"  # a changed Python file no longer parses


class Candidate(BaseModel):
    """One distinct patch for one instance, with every source that proposed it.

    `id` is the hash of the whitespace-normalised patch (see selection.normalize), so the same change
    submitted twice, or with different trailing whitespace, is one candidate with two sources.
    `ast_key` (filled once the patched files were parsed) groups formatting- and comment-only variants.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    instance_id: str
    patch: str
    sources: tuple[CandidateSource, ...] = ()
    ast_key: str | None = None
    flags: tuple[CandidateFlag, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def size(self) -> int:
        """Changed lines: CodeMonkeys breaks ties towards the smaller patch."""
        return sum(
            1 for line in self.patch.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))
        )

    @property
    def usable(self) -> bool:
        return CandidateFlag.DOES_NOT_APPLY not in self.flags


class TestKind(StrEnum):
    __test__ = False  # not a pytest class
    GENERATED = "generated"  # written by a test-writing trajectory, exit-code contract
    HARVESTED = "harvested"  # a script a trajectory wrote and ran (reproduce.py and the like)
    CANDIDATE = "candidate"  # a test file or function that a candidate patch adds to the repository
    REGRESSION = "regression"  # an existing repository test that passes at the base commit


class Contract(StrEnum):
    EXIT_CODE = "exit-code"  # 0 fixed, 2 not fixed, anything else an error
    PASS_FAIL = "pass-fail"  # 0 pass, anything else fail (repository tests)
    BEHAVIOUR = "behaviour"  # only prints: candidates vote by how they change the base's output


class TestCase(BaseModel):
    """A runnable check: files to write into the sandbox, then one shell command in the repository."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(frozen=True)

    id: str  # content hash of (command, files)
    instance_id: str
    kind: TestKind
    contract: Contract
    command: str
    files: dict[str, str] = Field(default_factory=dict)  # absolute path in the sandbox -> content
    origin: str = ""  # where it came from (trajectory file and step, candidate id, test node id)
    timeout: float = 120.0

    @classmethod
    def make(cls, **fields) -> TestCase:
        files = fields.get("files", {})
        ident = content_hash(fields["command"], *(f"{p}\0{c}" for p, c in sorted(files.items())))
        return cls(id=ident, **fields)


class Cell(BaseModel):
    """One candidate (or BASE) run against one test."""

    model_config = ConfigDict(frozen=True)

    instance_id: str
    candidate_id: str
    test_id: str
    exit_code: int | None  # None: the run could not happen (see error)
    output: str = ""  # normalised (addresses, timings, temp paths stripped), capped
    output_hash: str = ""
    duration: float = 0.0
    timed_out: bool = False
    error: str | None = None  # infrastructure failure or patch that did not apply: not a verdict


class VerifierScore(BaseModel):
    """The execution-free judge's belief that a candidate resolves the issue, in [0, 1]."""

    model_config = ConfigDict(frozen=True)

    instance_id: str
    candidate_id: str
    score: float | None  # None: the judge's answer was unusable (a missing score, never a crash)
    method: Literal["logprobs", "sampled", "simulated"] = "logprobs"
    samples: int = 1
    cost: float = 0.0
    model: str = ""
    detail: str = ""
    cached: bool = False  # read from the verifier's disk cache: `cost` is what it cost when first asked


class Decision(BaseModel):
    """What a policy chose for one instance, the full ranking, and why (one reason per line)."""

    instance_id: str
    policy: str
    chosen: str | None  # candidate id; None when no candidate was usable
    ranking: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    scores: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)  # per candidate


class Matrix(BaseModel):
    """Every cell of one instance: candidates (and BASE) x tests. Missing cells are simply absent."""

    instance_id: str
    cells: list[Cell] = Field(default_factory=list)

    def get(self, candidate_id: str, test_id: str) -> Cell | None:
        return self._index().get((candidate_id, test_id))

    def row(self, candidate_id: str) -> dict[str, Cell]:
        return {t: c for (cand, t), c in self._index().items() if cand == candidate_id}

    def _index(self) -> dict[tuple[str, str], Cell]:
        # rebuilt on demand: matrices are small (tens x tens) and immutable once recorded
        return {(c.candidate_id, c.test_id): c for c in self.cells}


class SelectionInputs(BaseModel):
    """Everything a policy may look at for one instance: recorded results only, no sandbox, no model."""

    instance_id: str
    candidates: list[Candidate]
    tests: list[TestCase] = Field(default_factory=list)
    matrix: Matrix
    verifier: dict[str, VerifierScore] = Field(default_factory=dict)  # by candidate id
