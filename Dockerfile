# wwts in a container: `wwts serve` (docker-compose's wwts-serve service), the one-shot
# `wwts-setup` service (`wwts elk setup`), and `wwts classify`.
#
# Two stages: the first builds the wheel from the source tree, the second installs that
# wheel like any user would (templates, Kibana objects and labels travel inside it), so
# the image holds no source tree.
#
# Size: PyPI's torch wheel for Linux x86_64 is the CUDA build and pulls several GB of NVIDIA
# libraries, so this image is large (expect 5+ GB and a long first build). For a CPU-only image
# of roughly 1-2 GB, install torch from PyTorch's CPU wheel index first:
#
#   docker compose build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu wwts-setup
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY wwts ./wwts
COPY pipeline ./pipeline
COPY telemetry ./telemetry
COPY queries ./queries
COPY deploy ./deploy
COPY benchmarks ./benchmarks
RUN pip wheel --no-deps --no-cache-dir --wheel-dir /dist .

FROM python:3.11-slim

ARG TORCH_INDEX_URL=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Optional CPU-only torch/torchvision (see above); otherwise `pip install` below takes them
# from PyPI like any other dependency.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" torch torchvision; \
    fi

COPY --from=build /dist /dist
RUN pip install /dist/*.whl && rm -rf /dist

RUN useradd --create-home --uid 10010 wwts
USER wwts
WORKDIR /home/wwts
ENV WWTS_LOG_DIR=/home/wwts/logs \
    WWTS_CACHE=/home/wwts/.cache/wwts

CMD ["wwts", "--help"]
