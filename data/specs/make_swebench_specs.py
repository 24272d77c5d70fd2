"""Regenerate the snapshot of the published SWE-bench specifications kept in this folder.

swebench 5 no longer ships the per-(repo, version) install specs, so the facts are taken from the last
release that does (4.1.0, MIT) and kept here as data. `patchfleet.data.upstream` prefers an installed
swebench that still has them and falls back to this snapshot.

    pip download swebench==4.1.0 --no-deps -d /tmp/swb && unzip -q /tmp/swb/*.whl -d /tmp/swb/x
    python data/specs/make_swebench_specs.py /tmp/swb/x
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    from importlib.metadata import PathDistribution

    from swebench.harness.constants import NON_TEST_EXTS
    from swebench.harness.constants import python as py

    folder = Path(__file__).parent
    dist = next(Path(sys.argv[1]).glob("swebench-*.dist-info"), None)
    version = PathDistribution(dist).version if dist else "unknown"
    specs = folder / "swebench_python.json"
    specs.write_text(json.dumps(py.MAP_REPO_VERSION_TO_SPECS_PY, indent=1, sort_keys=True) + "\n")
    paths = {
        "swebench_version": version,
        "MAP_REPO_TO_REQS_PATHS": py.MAP_REPO_TO_REQS_PATHS,
        "MAP_REPO_TO_ENV_YML_PATHS": py.MAP_REPO_TO_ENV_YML_PATHS,
        "MAP_REPO_TO_INSTALL_PY": py.MAP_REPO_TO_INSTALL_PY,
        "NON_TEST_EXTS": NON_TEST_EXTS,
    }
    (folder / "swebench_paths.json").write_text(json.dumps(paths, indent=1, sort_keys=True) + "\n")
    count = sum(len(v) for v in py.MAP_REPO_VERSION_TO_SPECS_PY.values())
    print(f"wrote {specs} and swebench_paths.json: {count} (repo, version) specs of swebench {version}")


if __name__ == "__main__":
    main()
