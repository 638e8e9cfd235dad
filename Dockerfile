# natter in a container: built in a Rust image, run from a small Debian one
# as an unprivileged user, with history and accounts in a volume.
#
#   docker build -t natter .
#   docker run -d --name natter -p 5555:5555 -p 8080:8080 -v natter-data:/data natter
#
# Flags after the image name replace the default command, e.g. with a
# settings file (`natter config` prints one) mounted read-only:
#   docker run ... -v $PWD/natter.toml:/etc/natter/natter.toml:ro \
#     natter serve --data-dir /data --config /etc/natter/natter.toml
# `docker kill -s HUP natter` reloads the file, the MOTD and the certificate.

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
# 5555: plain text (nc, telnet); 5556: TLS, when turned on; 8080: the web
# client; 8443: the web client over HTTPS, when TLS is on.
EXPOSE 5555 5556 8080 8443
# SIGTERM (docker stop) says goodbye to every client and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/natter"]
CMD ["serve", "--data-dir", "/data"]
