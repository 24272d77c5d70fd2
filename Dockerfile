# The pipeline's own image, for the GitHub Action and for cluster workers. Sandboxes are siblings:
# mount the host's Docker socket (-v /var/run/docker.sock:/var/run/docker.sock).
FROM python:3.11-slim-bookworm
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends git patch debootstrap \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/patchfleet
COPY . .
RUN python -m pip install --no-cache-dir . \
 && rm -rf /opt/patchfleet/tests /opt/patchfleet/benchmarks
ENV LITELLM_LOCAL_MODEL_COST_MAP=True
ENTRYPOINT ["patchfleet"]
CMD ["--help"]
