# wwts in a container: used by docker-compose's one-shot `wwts-setup` service
# (`wwts elk setup`), and usable for `wwts classify` too.
#
# Size: PyPI's torch wheel for Linux x86_64 is the CUDA build and pulls several GB of NVIDIA
# libraries, so this image is large (expect 5+ GB and a long first build). For a CPU-only image
# of roughly 1-2 GB, install torch from PyTorch's CPU wheel index first:
#
#   docker compose build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu wwts-setup
FROM python:3.11-slim

ARG TORCH_INDEX_URL=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /app

# Optional CPU-only torch/torchvision (see above); otherwise `pip install` below takes them
# from PyPI like any other dependency.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" torch torchvision; \
    fi

COPY pyproject.toml README.md ./
COPY wwts ./wwts
COPY pipeline ./pipeline
COPY telemetry ./telemetry
# `wwts elk setup` reads the templates, the ILM policy and the Kibana saved objects from
# deploy/elk next to the package, hence the editable install from /app.
COPY deploy ./deploy
RUN pip install -e .

RUN useradd --create-home --uid 10010 wwts
USER wwts
ENV WWTS_LOG_DIR=/home/wwts/logs

CMD ["wwts", "--help"]
