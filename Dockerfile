FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# psycopg2 builds against libpq; gcc for its C extension.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev gcc postgresql-client \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY config config
COPY attacks attacks
COPY study study
COPY labeling labeling
COPY analysis analysis
COPY templates templates
COPY manage.py ./
# Editable, so that settings find templates and the shipped sample beside the code.
RUN pip install --no-cache-dir -c constraints.txt -e .
# The annotator's script and styles, compressed, served by WhiteNoise from gunicorn.
RUN DEBUG=1 python manage.py collectstatic --noinput

RUN useradd --create-home advstudy && mkdir -p /data/media && chown advstudy /data/media
USER advstudy
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--worker-class", "gthread", "--threads", "4", "--timeout", "120"]
