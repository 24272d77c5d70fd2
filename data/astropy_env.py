"""What astropy's environments need beyond the published spec: astropy-helpers, and building in the env.

astropy before 4.1 builds with astropy-helpers, a git submodule. The official harness clones without
submodules, and `ah_bootstrap.py` (run by setup.py) then fetches it from GitHub with `git submodule update
--init`. GitHub is out of reach here, so the instance layer fills the submodule's folder with the PyPI
release of the same code; ah_bootstrap's own fetch then fails with a warning and it imports the folder.
Those setup.py-only versions were installed by conda-era pip with `setup.py develop`, in the environment:
compiled against the spec's numpy, with the spec's setuptools, and Cython and Jinja2 fetched by setuptools
(`setup_requires`). pip 26 has no `setup.py develop`; building without isolation is the same thing (an
isolated build would compile against numpy 2).
"""

from __future__ import annotations

from patchfleet.data.runtimes import Runtime

REPO = "astropy/astropy"
HELPERS = "astropy_helpers"
# The submodule commit at a base commit -> the astropy-helpers release with that code: the release the
# commit is, or for a development snapshot the first release after it. From astropy's own history (the
# commits that move the submodule say which release they update to; dates in the comments).
HELPERS_RELEASE: dict[str, str] = {
    "5abc0f82e640261f17646ae50be1546f9e3d8e8d": "2.0rc1",  # 2017-06-26, "v2.0dev"
    "ed2e7897862ae9e979b336df670d7a5541cdd8f0": "2.0",
    "14ca346b0da3e92e65bdc398cc8f726cbd7be57d": "2.0.1",
    "d23a53f46dd1c3703e5eee63dca3f53bd18a4e8b": "2.0.2",  # 2017-10-13, released that day
    "e25916c4993304e33cc80974e6afe3fa42b039a0": "3.0rc1",  # 2018-01-07, "py3 only", released that day
    "071fd45b7ab2133ab0e6d6ca953cd114278210af": "3.0rc2",
    "b7fc50081b55d46da118bbf7c2fce5cad8350b0e": "3.0",
    "09bbe9583e70ed1804f1051a3aaca1640d08c6f8": "3.0.1",
    "ca630405b54d40695b7bbd2824cb0f142b5811b6": "3.0.2",
    "7f11678c03286f72acc9bab77868dabaeb368fda": "3.1rc1",  # 2018-07-24 development version
    "4ebff4fa4db4f387b2e368ab7ef7ede5a55d6dec": "3.1rc1",  # 2018-10-26 development version
    "4c05fe5b62186bf4a9df500474003441d806649b": "3.1rc1",
    "9f82aac6c2141b425e2d639560f7260189d90b54": "3.1",
    "35b16cd0baa45e6c58d1d4e48b80034b66857d1c": "3.1.1",  # 2019-01-24 development version
    "5605ff4f781839254a49a8c86afd2b3eb7eb28e4": "3.1.1",  # 2019-02-08 development version
    # 3.2rc1, 3.2rc2 (not on PyPI) and 3.2: 3.2's sdist lacks the helpers' C source (commands/src/compiler.c)
    # that a git checkout has; 3.2.1 ships it (astropy-helpers #485) and otherwise only drops a warning
    "c748d918d3ff922471415fdb8187036168d07366": "3.2.1",
    "32b440b52f4c60592148b3254c7ddbf14df3c6e0": "3.2.1",
    "20deaeb79b0518fa9bb9dbcd46f1baed79b6f736": "3.2.1",
    "ba3734222a40f4c2864c375c6639f32cd9df06cd": "3.2.1",
    "ce42e6e238c200a4715785ef8c9d233f612d0c75": "3.2.2",
    "83d69ed1b166bdca6ead5d1551503e7e6b3645f9": "4.0",  # 4.0rc1 (not on PyPI)
    "d5f5a76fe87beca9a132186824c02408cf827ab8": "4.0",
    "d2a6304a3e801bc2cb053ccf1cf09a9f1e62036c": "4.0.1",
}
# astropy 4.1 (2020-01-22 on master) replaced astropy-helpers by extension-helpers and pyproject.toml
LAST_HELPERS_VERSION = (4, 0)
# Pinned sdists whose setup.py imports what setuptools has since removed (MarkupSafe 1.0: `Feature`, gone
# in 46.0). Conda-era pip built them with the environment's setuptools (the spec's 38.2.4); uv builds in
# isolation, with the newest, and cannot use 38.2.4 itself (no `build_meta.__legacy__` before 40.8), so
# that step's builds are held below 46. Only uv (Python < 3.9) installs such old pins.
OLD_SETUPTOOLS_SDISTS = {"markupsafe==1.0"}
OLD_SETUPTOOLS = "setuptools<46"
BUILD_CONSTRAINTS = "/tmp/build-constraints.txt"
# what setup.py adds to setup_requires in a git checkout (not in an sdist): its build-time tools
SETUP_REQUIRES = ("cython>=0.29.13", "jinja2>=2.7")


def uses_helpers(repo: str, version: str) -> bool:
    """Whether (repo, version) is an astropy that builds with astropy-helpers and setup.py alone."""
    if repo != REPO:
        return False
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    return parts <= LAST_HELPERS_VERSION


def fill_helpers_step(python: str = "python") -> str:
    """An instance step: the submodule's folder filled from PyPI when HEAD records one and it is empty.

    Unknown submodule commits fail the build by name rather than build with other helpers.
    """
    cases = "\n".join(f"    {sha}) release={release} ;;" for sha, release in HELPERS_RELEASE.items())
    return (
        f"sha=$(git ls-tree HEAD {HELPERS} | awk '$2 == \"commit\" {{print $3}}')\n"
        f'if [ -n "$sha" ] && [ -z "$(ls -A {HELPERS} 2>/dev/null)" ]; then\n'
        '  case "$sha" in\n'
        f"{cases}\n"
        f'    *) echo "patchfleet: {HELPERS} at $sha: no known astropy-helpers release" >&2; exit 1 ;;\n'
        "  esac\n"
        f'  {python} -m pip download -q --no-deps --no-binary :all: "astropy-helpers==$release" -d /tmp/ah\n'
        f"  mkdir -p {HELPERS}\n"
        f"  tar -xzf /tmp/ah/astropy-helpers-*.tar.gz --strip-components=1 -C {HELPERS}\n"
        "  rm -rf /tmp/ah\n"
        "fi"
    )


def builds_in_env(repo: str, version: str, runtime: Runtime) -> bool:
    """Whether the editable install must build in the environment (`--no-build-isolation`).

    Only where pip 26 installs: below Python 3.9, pip 21 still runs `setup.py develop` by itself.
    """
    return uses_helpers(repo, version) and runtime.installer == "pip"


def setup_requires(spec_pins: list[str]) -> list[str]:
    """The build tools setup.py asks setuptools for, less those the spec already pins."""
    pinned = {pin.split("==")[0].strip("'\" ").lower() for pin in spec_pins}
    return [req for req in SETUP_REQUIRES if req.split(">=")[0] not in pinned]


def old_sdist_build(repo: str, pins: list[str], runtime: Runtime) -> tuple[str, list[str]]:
    """(shell prefix, uv flags) that build the pins' sdists with a setuptools `OLD_SETUPTOOLS_SDISTS` need."""
    if repo != REPO or runtime.installer != "uv" or not any(p.lower() in OLD_SETUPTOOLS_SDISTS for p in pins):
        return "", []
    return f"printf '%s\\n' '{OLD_SETUPTOOLS}' > {BUILD_CONSTRAINTS} && ", [
        f"--build-constraints={BUILD_CONSTRAINTS}"
    ]
