# commune-ioc image: multi-stage build, small Debian runtime, non-root user.
#   docker compose build commune-ioc     (or: docker build -t commune-ioc .)

FROM rust:1-bookworm AS build
WORKDIR /src
# No debug info and stripped symbols in the image (the repo's release
# profile keeps line tables for profiling).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml names the benchmarks, so their sources must be present.
COPY benches ./benches
# The wall screen is embedded in the binary at build time (rust-embed).
COPY dashboards/ioc ./dashboards/ioc
RUN cargo build --release --locked --bin commune-ioc

FROM debian:bookworm-slim
# ca-certificates: TLS to a remote broker or InfluxDB; libssl3: the
# InfluxDB client's TLS (system OpenSSL, updated by Debian).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/commune-ioc --shell /usr/sbin/nologin ioc \
    && mkdir -p /var/lib/commune-ioc /etc/commune-ioc \
    && chown ioc:ioc /var/lib/commune-ioc
COPY --from=build /src/target/release/commune-ioc /usr/local/bin/commune-ioc
COPY config/commune.toml /etc/commune-ioc/commune.toml
WORKDIR /var/lib/commune-ioc
ENV IOC_CONFIG=/etc/commune-ioc/commune.toml \
    IOC__STORE__PATH=/var/lib/commune-ioc \
    IOC__HTTP__LISTEN=0.0.0.0:8080 \
    IOC_HEALTH_ADDR=127.0.0.1:8080
USER ioc
VOLUME ["/var/lib/commune-ioc"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["commune-ioc", "healthcheck"]
ENTRYPOINT ["commune-ioc"]
CMD ["serve"]
