# atlasreg-cursor: the daemon, next to AtlasReg Core (see deploy/compose.yaml).
#   docker build -t atlasreg-cursor:0.1.0 --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
FROM python:3.11-slim-bookworm

# VERSION: the release; REVISION: the commit built; SOURCE_URL: where the source lives.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE_URL=https://github.com/atlasreg/atlasreg-cursor
LABEL org.opencontainers.image.title="atlasreg-cursor" \
      org.opencontainers.image.description="Queue-to-object-storage ingest orchestrator between the Cloudflare edge and AtlasReg Core" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.documentation="${SOURCE_URL}#operations" \
      org.opencontainers.image.vendor="AtlasReg" \
      org.opencontainers.image.licenses="Proprietary"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CURSOR_HOME=/var/lib/atlasreg-cursor \
    METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9108

# tini is the init: it forwards SIGTERM to the daemon and reaps crawler subprocesses
# (-s: also when another init, such as compose's `init: true`, is PID 1).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system cursor \
 && useradd --system --gid cursor --home-dir /app --shell /usr/sbin/nologin cursor

WORKDIR /app
# Dependencies first, pinned (deploy/constraints.txt, refreshed by deploy/lock.py):
# this layer is rebuilt only when the pins change, not on every code change.
# The pins include the build backend (hatchling), so the package below is built
# by that version (--no-build-isolation), not by whatever hatchling is newest.
COPY deploy/constraints.txt deploy/constraints.txt
RUN pip install -r deploy/constraints.txt

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps --no-build-isolation . \
 && mkdir -p "$CURSOR_HOME" \
 && chown cursor:cursor "$CURSOR_HOME"

VOLUME ["/var/lib/atlasreg-cursor"]
USER cursor
EXPOSE 9108
STOPSIGNAL SIGTERM
# Liveness: the consume loop is not wedged (a run in progress counts as alive).
# /readyz (dependencies reachable) is for load balancers and readiness probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('METRICS_PORT', '9108'), timeout=4)"]

ENTRYPOINT ["tini", "-s", "--", "atlasreg-cursor"]
CMD ["run"]
