"""What the updates and security pockets change in each base image: its Python, and the behaviours of it
that SWE-bench tests are known to depend on.

The official images' Python is conda's newest patch release of its minor version; a distribution's release
pocket ships the one it was released with. This builds (or finds) the current base of every release
(`BaseLayer`, upgraded from `<release>-updates/-security`) and probes it, beside any other image given
with `--before` (e.g. a base made before the pockets, while it still exists on the machine):

    python3 benchmarks/base_pockets.py --out benchmarks/results/base_pockets/base_pockets.json \
        [--before patchfleet/base:bullseye-8bb7058bbefc40cf ...]

Probed: the interpreter's version and its Debian package version; `urlsplit` of a URL with a newline
(bpo-43882, 3.9.5 / 3.8.11: django__django-14349's FAIL_TO_PASS test fails at the base commit only where
the newline is dropped) and with a leading blank (CVE-2023-24329, 3.11.4 / 3.10.12 / 3.9.17 / 3.8.17);
the SQLite the interpreter links (Django's test suite skips tests by SQLite version).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import docker

from patchfleet.atomic import write_json_atomic
from patchfleet.data.runtimes import DISTROS
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.images import BaseLayer, ImageBuilder, ImageSpec
from patchfleet.sandbox.trust import HostTrust

PROBE = r"""
import json, sqlite3, subprocess, sys
from urllib.parse import urlsplit
minor = "%d.%d" % sys.version_info[:2]
package = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "python" + minor],
                         stdout=subprocess.PIPE, universal_newlines=True).stdout  # 3.6: no capture_output
print(json.dumps({
    "python": sys.version.split()[0],
    "package": package,
    "urlsplit_drops_newline": urlsplit("http://www.djangoproject.com/\n").path == "/",
    "urlsplit_strips_leading_blank": urlsplit(" http://x.com/").scheme == "http",
    "sqlite": sqlite3.sqlite_version,
}))
"""


def probe(client: docker.DockerClient, image: str) -> dict:
    output = client.containers.run(image, ["python3", "-c", PROBE], remove=True, network_mode="none")
    return json.loads(output.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--before", nargs="*", default=[], help="other images to probe beside the bases")
    parser.add_argument("--distros", nargs="*", default=sorted(DISTROS), choices=sorted(DISTROS))
    args = parser.parse_args()
    client = docker.from_env()
    builder = ImageBuilder(DockerBackend(trust=HostTrust.from_env()), log=print)
    rows = {}
    for name in args.distros:
        started = time.monotonic()
        tag = builder.ensure(ImageSpec(base=BaseLayer(distro=name)))
        rows[tag] = {"distro": name, "pockets": list(DISTROS[name].pockets), **probe(client, tag)}
        rows[tag]["seconds_to_build_or_find"] = round(time.monotonic() - started, 1)
        print(tag, json.dumps(rows[tag]), flush=True)
    before = {}
    for tag in args.before:
        before[tag] = probe(client, tag)
        print(tag, json.dumps(before[tag]), flush=True)
    write_json_atomic(
        args.out,
        {
            "benchmark": "base_pockets",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(),
            "official_pythons_seen": "3.9.20 and 3.10.15 (pytest headers in the recorded mini-swe-agent "
            "trajectories, which ran in the official images)",
            "bases": rows,
            "before": before,
        },
    )


if __name__ == "__main__":
    main()
