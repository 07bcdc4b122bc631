# aivitals serve in a small image: wheels built in one stage, installed into a clean slim Python
# in the next, so no compiler, pip cache or source tree ships. docs/deployment.md.
#   docker build -t aivitals .
#   docker run -p 8700:8700 aivitals
# The extras: psycopg for a PostgreSQL store (--db or AIVITALS_STORE), redis for shared limits,
# budgets and cache across workers and replicas (--redis).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgresql,redis]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "aivitals[postgresql,redis]" \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/aivitals --create-home aivitals
# A SQLite store (the default ./aivitals.db) and the calls a failing store leaves beside it for
# the next start live here: mount a volume on it to keep them.
WORKDIR /var/lib/aivitals
USER 10001:10001
EXPOSE 8700
# Liveness only: /readyz also fails while the store or an upstream is down, and a container
# restarted for that would not bring them back. The slim image has no curl; Python is there.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8700/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["aivitals"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8700"]
