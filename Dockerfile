# hubmeter's image: built in a full Debian 12 stage, run from debian:12-slim with only the
# shared libraries it links (no compiler, no headers), as the unprivileged user hubmeter.
# No secret is baked in: HUBMETER_DATABASE_URL, HUBMETER_REDIS_URL and
# HUBMETER_ADMIN_TOKEN come from the environment (docker-compose.yml reads them from .env)
# or from a --config file mounted at run time.
FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libmicrohttpd-dev libcurl4-openssl-dev libhiredis-dev \
      libpq-dev libjansson-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY scripts/embed-sql.sh scripts/
COPY sql sql
COPY common common
COPY registry registry
COPY meter meter
COPY gateway gateway
COPY billing billing
COPY main main
RUN make -j"$(nproc)" bin/hubmeter

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libmicrohttpd12 libcurl4 libhiredis0.14 libpq5 libjansson4 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/hubmeter --create-home \
      --shell /usr/sbin/nologin hubmeter
COPY --from=build /src/bin/hubmeter /usr/local/bin/hubmeter
USER hubmeter
WORKDIR /var/lib/hubmeter
ENV HUBMETER_LISTEN=0.0.0.0:8080 \
    HUBMETER_ADMIN_LISTEN=0.0.0.0:8081 \
    HUBMETER_JOURNAL_DIR=/var/lib/hubmeter/journal
VOLUME ["/var/lib/hubmeter"]
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/hubmeter"]
CMD ["serve"]
