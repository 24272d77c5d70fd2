"""Regenerate `swebench_python.json` from the published SWE-bench specifications.

swebench 5 no longer ships the per-(repo, version) install specs, so the facts are taken from the last
release that does (4.1.0, MIT) and kept here as data:

    pip download swebench==4.1.0 --no-deps -d /tmp/swb && unzip -q /tmp/swb/*.whl -d /tmp/swb/x
    python data/specs/make_swebench_specs.py /tmp/swb/x
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    from swebench.harness.constants.python import MAP_REPO_VERSION_TO_SPECS_PY

    out = Path(__file__).with_name("swebench_python.json")
    out.write_text(json.dumps(MAP_REPO_VERSION_TO_SPECS_PY, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}: {sum(len(v) for v in MAP_REPO_VERSION_TO_SPECS_PY.values())} (repo, version) specs")


if __name__ == "__main__":
    main()
