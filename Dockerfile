# Production image of the dataflow engine: `dataflow worker` by default, any other `dataflow` command
# (`validate`, `describe`, `infer`, `models serve`) by passing it as the command.
#
#   docker build -t dataflow:latest .
#   docker run --rm -v "$PWD/pipelines:/pipelines:ro" -p 8000:8000 \
#       -e SELDON_KAFKA_BOOTSTRAP_SERVERS=broker:9092 dataflow:latest worker --pipelines /pipelines
#   docker run --rm -v "$PWD/pipelines:/pipelines:ro" dataflow:latest validate /pipelines
#
# Two stages: the builder installs the runtime dependencies (no dev extras) and the project into
# /install; the final image copies only that tree, so no pip cache, build tools or source tree ship.
# Every dependency ships manylinux wheels for CPython 3.11 on amd64, so the builder needs no compiler; on
# a platform without wheels, add `apt-get install -y build-essential` to the builder (not the final image).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
 && pip install --prefix=/install -r requirements.txt

# Then the project itself (README.md is the package's readme, so the build needs it).
COPY README.md ./
COPY dataflow ./dataflow
RUN pip install --prefix=/install --no-deps .

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="dataflow" \
      org.opencontainers.image.description="Stream-processing engine for Seldon Core 2 inference pipelines (faust-streaming)" \
      org.opencontainers.image.licenses="Apache-2.0"

# DATAFLOW_DATA_DIR: Faust's local state; Kubernetes mounts an emptyDir here (read-only root fs).
# DATAFLOW_PIPELINES: where `worker` looks when --pipelines is not given (mount your pipelines here).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATAFLOW_DATA_DIR=/var/lib/dataflow \
    DATAFLOW_PIPELINES=/pipelines

# Same base image, same /usr/local prefix: the `dataflow` script's shebang (/usr/local/bin/python…)
# and the site-packages path are valid as copied.
COPY --from=builder /install /usr/local

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 dataflow \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/dataflow --no-create-home \
        --shell /usr/sbin/nologin dataflow \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/dataflow \
 && dataflow --version

USER 10001:10001
WORKDIR /var/lib/dataflow

# /live, /ready, /startup and /metrics (SELDON_HEALTH_SERVER_PORT). No HEALTHCHECK: Kubernetes probes
# these, and docker-compose.yml declares its own check.
EXPOSE 8000

ENTRYPOINT ["dataflow"]
CMD ["worker"]
