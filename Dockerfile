# syntax=docker/dockerfile:1
#
# Production image of oriserver.
#
#   docker build -t oriserver:local .
#   docker run --rm -p 50051:50051 oriserver:local              # oriserver serve
#   docker run --rm oriserver:local db upgrade                  # an admin process, same image
#
# Two stages on the same official base image. The virtual environment built in
# the first is copied into the second, and its interpreter link points at
# /usr/local/bin/python3.11, so both FROM lines must name the same image
# (tests/delivery/test_container_images.py checks that, the numeric non-root
# USER and the OCI labels, and lints this file with hadolint).
#
#   builder  installs the hash-pinned runtime lock into /opt/venv, then builds
#            the project's wheel offline with the pinned build backend
#   runtime  receives /opt/venv only: no pip cache, no build backend, no
#            compiler (grpcio and psycopg[binary] ship manylinux wheels)

# The base image: the official one by default. A build argument only so that a
# machine without registry access can substitute an equivalent base (the
# container test tier, tests/containers/images.py, builds on Debian's Python 3.11).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /build

# Dependencies first, from the lock files alone: this layer is rebuilt when
# requirements/ changes, not on every source edit.
COPY requirements/ requirements/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/runtime.txt \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.txt

# Then the project, built into a wheel without network access (hatchling and
# editables come from requirements/build.txt) and installed without its
# dependencies, which are already in place from the lock.
COPY pyproject.toml README.md LICENSE ./
COPY src/ src/
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-deps /wheels/oriserver-*.whl


FROM ${PYTHON_IMAGE} AS runtime

# Static labels; CI adds source, revision, version and created through
# docker/metadata-action (.github/workflows/ci.yml).
LABEL org.opencontainers.image.title="oriserver" \
      org.opencontainers.image.description="MathHelper gRPC microservice with an event-sourced calculation log" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed, numeric, non-root identity. Kubernetes can only verify runAsNonRoot
# against a numeric USER, and deploy/k8s/ runs the pods as the same UID.
# /data is the only directory the server may write to: the SQLite default
# (sqlite:///oriserver.db) is relative to the working directory.
RUN groupadd --system --gid 10001 oriserver \
 && useradd --system --uid 10001 --gid oriserver --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin oriserver \
 && install --directory --owner=10001 --group=10001 --mode=0750 /data

COPY --from=builder /opt/venv /opt/venv

WORKDIR /data
USER 10001:10001

# gRPC (ORI_PORT) and Prometheus metrics over plain HTTP (ORI_METRICS_PORT).
EXPOSE 50051 9464

# `ori health` asks the standard grpc.health.v1 service on localhost:$ORI_PORT
# and exits 0 only for SERVING. It reads the client's variables from the
# container: plaintext by default, TLS once ORI_TLS_CA_FILE is set (with
# ORI_TLS_SERVER_NAME when the certificate does not name localhost; the
# server's own ORI_TLS_CERT_FILE is not enough), as
# tests/delivery/test_image_healthcheck.py shows. Kubernetes ignores it and
# uses its own probes (deploy/k8s/base/deployment.yaml, components/tls).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 CMD ["ori", "health"]

# SIGTERM starts the graceful shutdown: NOT_SERVING, in-flight calls get
# ORI_SHUTDOWN_GRACE_SECONDS, buffered events get ORI_EVENTS_SHUTDOWN_FLUSH_SECONDS.
STOPSIGNAL SIGTERM
ENTRYPOINT ["oriserver"]
CMD ["serve"]
