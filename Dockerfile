# The pipeline's own image, for the GitHub Action's container mode and for cluster workers. Sandboxes are
# siblings: mount the host's Docker socket (-v /var/run/docker.sock:/var/run/docker.sock).
#
# The base is a build argument so the image builds where no registry is reachable, from the Debian base
# that `patchfleet images build` makes (`patchfleet/base:bookworm-<digest>`, with Python 3.11, git, patch):
#     docker build --build-arg BASE_IMAGE=patchfleet/base:bookworm-<digest> -t patchfleet .
# Behind a TLS-intercepting proxy, put its CA bundle in the build context as `extra-ca.crt` (git-ignored);
# pip then trusts it. APT_PACKAGES that the base lacks are installed (debootstrap builds base images when
# no registry is reachable; leave it out with --build-arg APT_PACKAGES="git patch").
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG APT_PACKAGES="git patch ca-certificates debootstrap"

# pyproject.toml is there so that the pattern may match nothing (an optional file).
COPY pyproject.toml extra-ca.cr[t] /tmp/patchfleet-build/
RUN set -e; \
    missing=""; \
    for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done; \
    if [ -n "$missing" ]; then \
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
      && rm -rf /var/lib/apt/lists/*; \
    fi; \
    if [ -f /tmp/patchfleet-build/extra-ca.crt ]; then \
      cp /tmp/patchfleet-build/extra-ca.crt /usr/local/share/ca-certificates/extra-ca.crt && update-ca-certificates; \
    fi; \
    rm -rf /tmp/patchfleet-build

WORKDIR /opt/patchfleet
# A venv works on both bases (Debian's own Python refuses system-wide pip installs, PEP 668).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1
# Dependencies first, from pyproject.toml alone: this slow layer (minutes) is reused until they change.
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -m venv /opt/venv \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" \
    > /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/pyproject.toml /tmp/requirements.txt
COPY . .
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
 && rm -rf /opt/patchfleet/tests /opt/patchfleet/benchmarks /opt/patchfleet/extra-ca.crt
ENV PATH=/opt/venv/bin:$PATH LITELLM_LOCAL_MODEL_COST_MAP=True
# A local base passes its `patchfleet.layer=base` label on; without this, `patchfleet images prune --layer
# base` would take the pipeline image for a base layer.
LABEL patchfleet.layer=pipeline
ENTRYPOINT ["patchfleet"]
CMD ["--help"]
