# atlasreg-cursor: the daemon, next to AtlasReg Core.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CURSOR_HOME=/var/lib/atlasreg-cursor \
    METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9108

RUN groupadd --system cursor && useradd --system --gid cursor --home-dir /app --shell /usr/sbin/nologin cursor

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && mkdir -p "$CURSOR_HOME" && chown cursor:cursor "$CURSOR_HOME"

USER cursor
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('METRICS_PORT', '9108'), timeout=4)"

ENTRYPOINT ["atlasreg-cursor"]
CMD ["run"]
