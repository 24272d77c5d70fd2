"""Matrix cells in an image known by a name that can move (an official SWE-bench image, re-pulled or
rebuilt under the same name) are keyed by the image's content id: cells from other content under the
same name are not reused. Without Docker: sandboxes are git repositories on the host
(tests/fakes/local_sandbox.py), which is all a cell's key needs."""

from __future__ import annotations

import itertools
from pathlib import Path

from fakes.local_sandbox import CALC_BUG, LocalSandbox, make_repo

from patchfleet.selection.execution import cache_context, run_matrix
from patchfleet.selection.matrix_cache import MatrixCache
from patchfleet.selection.model import BASE, Candidate, Contract, TestCase, TestKind, content_hash

INSTANCE = "local__calc-keys"
OFFICIAL = f"swebench/sweb.eval.x86_64.{INSTANCE}:latest"
CONDA = {"PATH": "/opt/miniconda3/envs/testbed/bin:/usr/bin:/bin"}
FIX = (
    "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n"
    "@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
)


class HostBackend:
    """A fresh host-side repository per sandbox, counting the starts."""

    def __init__(self, root: Path) -> None:
        self.root, self.starts = root, 0
        self._numbers = itertools.count()

    def start(self, spec) -> LocalSandbox:
        self.starts += 1
        return LocalSandbox(make_repo(self.root / f"sandbox-{next(self._numbers)}", CALC_BUG))


def test_the_content_id_replaces_the_name_in_the_key_and_ours_keep_theirs():
    first = cache_context(OFFICIAL, CONDA, "sha256:aaa")
    repulled = cache_context(OFFICIAL, CONDA, "sha256:bbb")
    assert first != repulled and OFFICIAL not in first and first.startswith("sha256:aaa#")
    assert first == cache_context("any other name", CONDA, "sha256:aaa")  # the content, whatever its name
    # our images' tags are content hashes: keyed by the tag, as before (their cached cells stay valid)
    assert cache_context("patchfleet/inst:1234").startswith("patchfleet/inst:1234#")
    assert cache_context("patchfleet/inst:1234") == cache_context("patchfleet/inst:1234", None, None)


def test_cells_of_a_re_pulled_image_under_the_same_name_are_run_again(tmp_path):
    backend = HostBackend(tmp_path / "sandboxes")
    cache = MatrixCache(tmp_path / "cells")
    test = TestCase.make(
        instance_id=INSTANCE,
        kind=TestKind.GENERATED,
        contract=Contract.EXIT_CODE,
        command="python3 -c 'import sys; from calc import add; sys.exit(0 if add(2, 3) == 5 else 2)'",
        files={},
        origin="test",
    )
    fix = Candidate(id=content_hash(FIX), instance_id=INSTANCE, patch=FIX)

    def run(image_id: str):
        return run_matrix(
            INSTANCE, [fix], [test], image=OFFICIAL, backend=backend, cache=cache, sandbox_env=CONDA,
            image_id=image_id, workers=1,
        )  # fmt: skip

    first = run("sha256:aaa")
    verdicts = {c.candidate_id: c.exit_code for c in first.matrix.cells}
    assert verdicts == {BASE: 2, fix.id: 0} and first.stats.cells_run == 2
    starts = backend.starts

    again = run("sha256:aaa")  # the same content: every cell from the cache, no container
    assert again.stats.cells_cached == 2 and backend.starts == starts

    repulled = run("sha256:bbb")  # same name, other content: nothing reused
    assert repulled.stats.cells_run == 2 and repulled.stats.cells_cached == 0 and backend.starts > starts
    assert {c.candidate_id: c.exit_code for c in repulled.matrix.cells} == verdicts
