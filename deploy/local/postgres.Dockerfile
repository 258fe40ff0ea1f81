# Stands in for the official postgres image: Debian bookworm's PostgreSQL 15, started as
# that image starts (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB; data in PGDATA).
ARG BOOKWORM=advstudy-local/bookworm
FROM ${BOOKWORM}
# No cluster of Debian's own: the entrypoint makes one in PGDATA on the first start.
RUN mkdir -p /etc/postgresql-common \
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/
ENTRYPOINT ["postgres-entrypoint.sh"]
CMD ["postgres"]
