# Two images from one file (docker-compose.yml builds both):
#   --target ranker  the gRPC server: a plain `pip install .`, no torch
#   --target jobs    data, features, training and export: the `train` and `spark` extras
FROM python:3.11-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The workspace lives on a volume; a named volume takes this owner when created.
RUN useradd --create-home --uid 10001 shoprank \
    && mkdir -p /var/lib/shoprank \
    && chown shoprank /var/lib/shoprank
WORKDIR /src
COPY pyproject.toml ./
COPY server ./server
COPY features ./features
COPY training ./training

FROM base AS jobs
# Java for `features backfill --engine spark` and the Spark offline store (PySpark 4 needs 17+).
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
# torch first and alone, from the CPU index: PyPI's wheel brings gigabytes of
# CUDA. The train extra then finds torch==2.13.0 already satisfied.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install '.[train,spark]' && rm -rf /src
USER shoprank
WORKDIR /home/shoprank
ENV SHOPRANK_HOME=/var/lib/shoprank
ENTRYPOINT ["shoprank"]
CMD ["pipeline", "--dataset", "synthetic"]

# Last, so a plain `docker build .` gives the server.
FROM base AS ranker
RUN pip install . && rm -rf /src
USER shoprank
WORKDIR /home/shoprank
ENV SHOPRANK_HOME=/var/lib/shoprank
EXPOSE 50051
ENTRYPOINT ["shoprank"]
CMD ["serve", "--host", "0.0.0.0", "--port", "50051"]
