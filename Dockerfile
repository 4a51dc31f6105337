# syntax=docker/dockerfile:1
# The operator image; the manager simulator runs from it too (command: cloudify-manager-sim).
#
# The base is pinned to Python 3.11 on Debian bookworm by tag. For byte-for-byte reproducible
# builds pin its digest as well (the same value in both stages):
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: install the package and its pinned dependencies into a virtualenv -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# setuptools builds our pure-Python package; every dependency comes as a wheel, so no compiler
# is needed here or shipped later. pip and setuptools then leave the venv.
RUN /opt/venv/bin/pip install setuptools wheel \
 && /opt/venv/bin/pip install --no-build-isolation --prefer-binary . \
 && /opt/venv/bin/python -m compileall -q /opt/venv \
 && /opt/venv/bin/pip uninstall -y setuptools wheel pip

# -- final: the virtualenv on a clean base, as a non-root user ----------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="cloudify-cluster-operator" \
      org.opencontainers.image.description="Kubernetes operator for Cloudify Manager HA clusters, and its manager simulator" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
# 65532: the conventional "nonroot" uid; numeric so runAsNonRoot can verify it.
USER 65532:65532
# 8080: kopf liveness (/healthz); 9090: Prometheus metrics.
EXPOSE 8080 9090
ENTRYPOINT ["cloudify-cluster-operator"]
