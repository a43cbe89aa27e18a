# One image for the ranking server and its batch jobs (docker-compose.yml runs both).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first and alone, from the CPU index: PyPI's wheel brings gigabytes of
# CUDA. `pip install .` then finds torch==2.13.0 already satisfied.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
COPY pyproject.toml ./
COPY server ./server
COPY features ./features
COPY training ./training
RUN pip install . && rm -rf /src

# The workspace lives on a volume; a named volume takes this owner when created.
RUN useradd --create-home --uid 10001 shoprank \
    && mkdir -p /var/lib/shoprank \
    && chown shoprank /var/lib/shoprank
USER shoprank
WORKDIR /home/shoprank
ENV SHOPRANK_HOME=/var/lib/shoprank

EXPOSE 50051
ENTRYPOINT ["shoprank"]
CMD ["serve", "--host", "0.0.0.0", "--port", "50051"]
