# Stands in for the official redis image: Debian bookworm's Redis 7, data in /data.
ARG BOOKWORM=advstudy-local/bookworm
FROM ${BOOKWORM}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /data
CMD ["redis-server"]
