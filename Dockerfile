# syntax=docker/dockerfile:1
# The load-test pods' image: the project installed from its hashed lock on a pinned Python.
# Published by .github/workflows/release-image.yml for each release tag; a checkout without a
# released image ships its wheel to the pods instead (loadtest/cloud/delivery.py), so nobody
# needs Docker to run a load test. The base must stay POD_PYTHON_IMAGE in domain/versions.py
# (tests/unit/test_release_image.py compares them).
ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY loadtest/cloud/data/build-requirements.txt /tmp/build-requirements.txt
RUN python -m pip install --no-cache-dir --disable-pip-version-check --no-deps \
        --only-binary=:all: --require-hashes -r /tmp/build-requirements.txt
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY twin ./twin
COPY infra ./infra
COPY workloads ./workloads
COPY costs ./costs
COPY loadtest ./loadtest
RUN python -m pip wheel --no-cache-dir --disable-pip-version-check --no-deps \
        --no-build-isolation --no-index --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# The lock is the whole closure, so --no-deps: the wheel's own metadata also names the Pulumi
# SDKs, which no pod imports and the image leaves out.
COPY loadtest/cloud/data/pod-requirements.txt /tmp/pod-requirements.txt
RUN python -m pip install --no-cache-dir --disable-pip-version-check --no-deps \
        --only-binary=:all: --require-hashes -r /tmp/pod-requirements.txt \
    && rm /tmp/pod-requirements.txt
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --disable-pip-version-check --no-deps --no-index \
        /wheels/qwen_stress-*.whl
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
USER 10001:10001
ENTRYPOINT ["python", "-m", "loadtest.pod"]
