# voicebridge agent service: the offline pipeline (whisper + piper) with Redis state support.
#   docker build -t voicebridge .
#   docker run -p 8080:8080 voicebridge          (or: docker compose up --build)
# Two stages: build the virtual environment with compilers at hand, then copy only it into a
# slim runtime that runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY voicebridge ./voicebridge
RUN pip install ".[offline,redis]"

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    VOICEBRIDGE_HOST=0.0.0.0 \
    VOICEBRIDGE_PORT=8080 \
    VOICEBRIDGE_LOG_FORMAT=json \
    HF_HOME=/app/.cache/huggingface
RUN useradd --system --uid 10001 --create-home --home-dir /app voicebridge
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=voicebridge:voicebridge configs ./configs
COPY --chown=voicebridge:voicebridge pipelines ./pipelines
USER voicebridge
EXPOSE 8080
# /health answers once the pipeline's models are loaded; no curl in a slim image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('VOICEBRIDGE_PORT', '8080'), timeout=4)"]
# SIGTERM stops the service cleanly (exit 0); dropped calls stay resumable in Redis meanwhile.
STOPSIGNAL SIGTERM
ENTRYPOINT ["voicebridge"]
CMD ["serve", "--host", "0.0.0.0"]
