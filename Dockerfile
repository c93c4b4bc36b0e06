# syntax=docker/dockerfile:1
# Image `coffeemesh-orders`: the orders-service HTTP server.
#   docker build -t coffeemesh-orders:TAG .
# The builder stages are identical to migrations.dockerfile's, so building one
# image after the other reuses every cached layer up to the runtime stage.
#
# Base images are pinned by digest (the tag in front is for the reader); a
# bump changes both. BINARIES=prebuilt takes binaries built outside instead
# of the builder stage, from a build context holding target/release/ (CI
# builds them once for all its checks):
#   docker build --build-arg BINARIES=prebuilt -f Dockerfile <context>
ARG RUST_IMAGE=docker.io/library/rust:1.95.0-slim-trixie@sha256:e14e87345b4d5964ddcc3491d27ee046a0f23820f340c3c1e24da6880141f7c0
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian13:nonroot@sha256:e792ab3d241a468a4fd7519ddbbebe66b49b5f365771716ea688ad40b6c6f1c2
ARG BINARIES=builder

FROM ${RUST_IMAGE} AS chef
WORKDIR /app
RUN cargo install --locked cargo-chef@0.1.78

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Dependencies only: this layer is rebuilt when Cargo.toml or Cargo.lock
# change, not when the application's sources do.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin orders-service --bin migrate
COPY . .
# The SQL migrations are embedded in both binaries at compile time.
RUN cargo build --release --locked --bin orders-service --bin migrate

FROM scratch AS prebuilt
COPY target/release/orders-service target/release/migrate /app/target/release/

FROM ${BINARIES} AS binaries

# Debian 13 like the builder (rust:<version>-slim-trixie), so the binary finds the
# glibc it was linked with: never older than the builder's.
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=binaries /app/target/release/orders-service /usr/local/bin/orders-service
# 65532 is distroless's `nonroot`; numeric so that runAsNonRoot can verify it.
USER 65532:65532
ENV PORT=8000
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/orders-service"]
