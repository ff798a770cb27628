# Multi-stage build of telegate: a Rust builder, then a slim non-root runtime.
#   docker build -t telegate .
#   docker run -d --name telegate -v telegate-state:/var/lib/telegate \
#     -e TELEGATE_API_ID=... -e TELEGATE_API_HASH=... -e TELEGATE_BOT_TOKEN=... telegate
# Clients in other containers share the socket through the volume
# (/var/lib/telegate/telegate.sock) or a volume mounted for --socket.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY tests tests
RUN cargo build --release --locked --bin telegate

FROM debian:bookworm-slim
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/telegate telegate \
 && install -d -o telegate -g telegate -m 0700 /var/lib/telegate
COPY --from=build /src/target/release/telegate /usr/local/bin/telegate
USER telegate:telegate
ENV TELEGATE_LOG_FORMAT=json
VOLUME ["/var/lib/telegate"]
ENTRYPOINT ["/usr/local/bin/telegate", "--state-dir", "/var/lib/telegate"]
CMD ["run"]
