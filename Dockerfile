# natter in a container: built in a Rust image, run from a small Debian one
# as an unprivileged user, with history and accounts in a volume.
#
#   docker build -t natter .
#   docker run -d --name natter -p 5555:5555 -v natter-data:/data natter
#
# Flags after the image name replace the default command, e.g.
#   docker run ... natter serve --data-dir /data --tls-self-signed

# Build stage: the release binary, with the locked dependency versions.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin natter \
    && cp target/release/natter /usr/local/bin/natter

# Runtime stage: the binary alone. SQLite is compiled in and TLS uses rustls,
# so no library beyond libc is needed.
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 natter \
    && useradd --system --uid 10001 --gid natter --home-dir /data --no-create-home natter \
    && mkdir /data \
    && chown natter:natter /data
COPY --from=build /usr/local/bin/natter /usr/local/bin/natter
USER natter
VOLUME ["/data"]
# 5555: plain text (nc, telnet); 5556: TLS, when turned on.
EXPOSE 5555 5556
# SIGTERM (docker stop) says goodbye to every client and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/natter"]
CMD ["serve", "--data-dir", "/data"]
