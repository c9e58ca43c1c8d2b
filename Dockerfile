# The mailer image: the worker by default; the same image runs the CLI (`mailer …`).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY workflows ./workflows
COPY activities ./activities
COPY db ./db
COPY mailer ./mailer
COPY worker.py starter.py ./
RUN pip install . \
    && useradd --create-home --uid 10001 mailer
USER mailer

CMD ["python", "-m", "worker"]
