# Tapestry image: one image for the web process and for the workers (the command differs).
#   docker build -t tapestry .                                   # CUDA torch for GPU workers
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t tapestry .
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TAPESTRY_DATA_DIR=/data

RUN useradd --create-home --uid 10001 tapestry \
    && mkdir -p /data \
    && chown tapestry:tapestry /data

WORKDIR /app
# torch first, from the index that matches the hardware: the largest layer changes least often.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY worker ./worker
COPY contract ./contract
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
# A regular install: templates, static files, migrations and the demo data ship inside the wheel.
RUN pip install ".[demo]"

USER tapestry
VOLUME ["/data"]
EXPOSE 8000
CMD ["uvicorn", "app.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
