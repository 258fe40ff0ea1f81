# Stands in for python:3.11-slim-bookworm where no registry serves it: Debian's Python 3.11
# (headers included) in a virtual environment first on PATH, so `python` and `pip` are the
# official image's.
ARG BOOKWORM=advstudy-local/bookworm
FROM ${BOOKWORM}
# The host's own certificate authorities (benchmarks/compose_smoke.py copies them here):
# where an egress proxy intercepts TLS, pip must trust its authority as the host does.
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-dev python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && update-ca-certificates \
 && python3 -m venv /usr/local/python
ENV PATH=/usr/local/python/bin:$PATH LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
