# The base image is a build argument: the official Python image by default; a host that
# reaches no registry builds a stand-in (deploy/local/, docker-compose.local.yml).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# psycopg2 builds against libpq; gcc for its C extension.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev gcc postgresql-client \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
# The pinned dependencies first, in a layer of their own: torch is several GB, and a code
# change then rebuilds only the layers below.
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /tmp/requirements.txt \
 && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt
COPY config config
COPY attacks attacks
COPY study study
COPY labeling labeling
COPY analysis analysis
COPY templates templates
COPY manage.py ./
# Editable, so that settings find templates and the shipped sample beside the code.
RUN pip install --no-cache-dir --no-deps -e .
# The annotator's script and styles, compressed, served by WhiteNoise from gunicorn.
RUN DEBUG=1 python manage.py collectstatic --noinput

RUN useradd --create-home advstudy && mkdir -p /data/media && chown advstudy /data/media
# The image has no git: every job records this as the code that made its examples
# (`git describe --always --dirty` at build time; empty: the package version).
ARG ADVSTUDY_CODE_VERSION=""
ENV ADVSTUDY_CODE_VERSION=${ADVSTUDY_CODE_VERSION}
USER advstudy
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--worker-class", "gthread", "--threads", "4", "--timeout", "120"]
