FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PRODUCTION=true
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN SECRET_KEY=build REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=sqlite:////tmp/build.db \
    python manage.py collectstatic --noinput
ENV WHITENOISE_USE_FINDERS=false
EXPOSE 8000
CMD ["uvicorn", "spignosapi.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--lifespan", "off", "--no-access-log"]
