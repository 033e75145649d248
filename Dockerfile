# makima-tts server on an NVIDIA GPU (also runs on CPU: see the `docker run` lines in README.md).
#
#   docker build -t makima-tts .
#   docker run --gpus all -p 8000:8000 -v makima-cache:/cache -v makima-data:/data makima-tts
#
# Model weights are never baked in: they are downloaded on first use into the /cache volume (HF_HOME)
# or mounted there; uploaded voices live in the /data volume.
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN python3 -m venv $VIRTUAL_ENV && pip install --upgrade pip

# The same install as .ci/run (torch pinned to 2.13.0, then the package), except that torch comes from
# PyTorch's CUDA index here: the default `pip install torch==2.13.0` used by CI is the CPU build. This
# CUDA wheel is installed inside the image only, never on the development or CI machines.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN pip install torch==2.13.0 --index-url $TORCH_INDEX

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[s3]" && rm -rf /app/src /app/build
COPY voices ./voices

RUN useradd --create-home --uid 10001 tts \
    && mkdir -p /cache /data \
    && chown tts:tts /cache /data
USER tts

ENV HF_HOME=/cache \
    TTS_HOST=0.0.0.0 \
    TTS_PORT=8000 \
    TTS_DEVICE=auto \
    TTS_VOICES_DIR=/app/voices \
    TTS_DATA_DIR=/data
VOLUME ["/cache", "/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('TTS_PORT', '8000'), timeout=4)"

CMD ["makima-tts", "serve"]
