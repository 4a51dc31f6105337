# The operator's image: the operator alone (clusterop, with kubectl-mgrc). The manager simulator
# has its own image (simulator/Dockerfile, make sim-image).
#
# Debian bookworm with Debian's own Python 3.11 (as distroless Python images are). Where a
# registry exists it builds as it is:   docker build -t cloudify-cluster-operator:dev .
# Without one, `make image` (hack/image/build.sh) makes the base from Debian's packages
# (debootstrap, docker import) and passes BASE_IMAGE, and feeds wheels built on the host
# (a `wheels/` folder in the build context): then pip needs no network in the build at all.
# For byte-for-byte reproducible builds pin the base's digest:
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:<digest> .
ARG BASE_IMAGE=debian:bookworm-slim

# -- runtime: the base, Debian's python3 and the "nonroot" user (65532, as distroless has) -------
FROM ${BASE_IMAGE} AS runtime
# The passwd/group entry: kopf's peering identity falls back to getpass.getuser() when neither
# POD_ID nor USER is set, which raises KeyError for a uid without an entry.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3=3.11.* \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin' >>/etc/passwd \
 && echo 'nonroot:x:65532:' >>/etc/group \
 && install -d -o 65532 -g 65532 -m 0750 /home/nonroot

# -- build: install the package and its pinned dependencies into a virtualenv -------------------
FROM runtime AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv=3.11.* \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
WORKDIR /src
# .dockerignore lets in only pyproject.toml, README.md, operator/ and (from make image) wheels/.
COPY . ./
# setuptools builds our pure-Python package; every dependency comes as a wheel, so no compiler
# is needed here or shipped later. With wheels/ pip stays offline. pip and setuptools then leave.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN if [ -d wheels ]; then set -- --no-index --find-links wheels; fi \
 && /opt/venv/bin/pip install "$@" setuptools wheel \
 && /opt/venv/bin/pip install "$@" --no-build-isolation --prefer-binary . \
 && /opt/venv/bin/python -m compileall -q /opt/venv \
 && /opt/venv/bin/pip uninstall -y setuptools wheel pip

# -- final: the virtualenv on the runtime, as the non-root user ---------------------------------
FROM runtime
LABEL org.opencontainers.image.title="cloudify-cluster-operator" \
      org.opencontainers.image.description="Kubernetes operator for Cloudify Manager HA clusters" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/nonroot
COPY --from=build /opt/venv /opt/venv
# 65532: the conventional "nonroot" uid; numeric so runAsNonRoot can verify it.
USER 65532:65532
# 8080: kopf liveness (/healthz); 9090: Prometheus metrics.
EXPOSE 8080 9090
ENTRYPOINT ["cloudify-cluster-operator"]
