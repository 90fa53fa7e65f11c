# One image for every process of the production layout: `ats serve code-server | webserver |
# daemon` and `ats stream` (compose.yaml and deploy/railway/ choose the command).
# Build: docker build -t ats-pipelines .   (uv resolves nothing: uv.lock is the truth)

ARG PYTHON_VERSION=3.11

FROM ghcr.io/astral-sh/uv:0.8 AS uv

# --- build: the virtual environment, dependencies in their own layer -----------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
COPY --from=uv /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
COPY ats_pipelines ./ats_pipelines
COPY sql ./sql
COPY feature_repo ./feature_repo
COPY README.md dagster.yaml workspace.yaml workspace.grpc.yaml ./
# the project is installed editable on purpose: it finds sql/, feature_repo/ and the Dagster
# files beside its package (ats_pipelines.config.project_root)
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# --- runtime: no compiler, no uv, a non-root user ---------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# libgomp1: LightGBM's OpenMP runtime; postgresql-client: pg_dump / pg_restore for `ats db backup`
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/ats ats \
    && mkdir -p /data \
    && chown ats:ats /data
COPY --from=build --chown=root:root /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ATS_ENV=prod \
    ATS_STATE_DIR=/data \
    DAGSTER_TELEMETRY_DISABLED=1 \
    FEAST_USAGE=False \
    GX_ANALYTICS_ENABLED=False
WORKDIR /app
USER ats
VOLUME ["/data"]
# webserver, code server (gRPC), the stream's Prometheus endpoint
EXPOSE 3000 4266 9108
CMD ["ats", "serve", "webserver", "--bind", "0.0.0.0"]
