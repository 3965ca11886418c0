# Multi-stage build: compile medic, ship it on a slim Debian with nothing else.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked && strip target/release/medic

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/medic --create-home medic
COPY --from=build /src/target/release/medic /usr/local/bin/medic
USER medic
WORKDIR /var/lib/medic
EXPOSE 7979
# Exec form, no shell: medic is PID 1. It handles SIGTERM/SIGINT itself and, as a child
# subreaper, reaps every orphan of its probes and steps, so no tini is needed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/medic"]
CMD ["run", "--config.file=/etc/medic/medic.yml", "--web.listen-address=0.0.0.0:7979", "--state.url=sqlite:///var/lib/medic/data/medic.db"]
