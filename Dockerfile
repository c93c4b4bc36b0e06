# syntax=docker/dockerfile:1
# Image `coffeemesh-orders`: the orders-service HTTP server.
#   docker build -t coffeemesh-orders:TAG .
# The builder stages are identical to migrations.dockerfile's, so building one
# image after the other reuses every cached layer up to the runtime stage.

FROM rust:1.95.0-slim-trixie AS chef
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

# Debian 13 like the builder (rust:<version>-slim-trixie), so the binary finds the
# glibc it was linked with: never older than the builder's.
FROM gcr.io/distroless/cc-debian13:nonroot AS runtime
COPY --from=builder /app/target/release/orders-service /usr/local/bin/orders-service
# 65532 is distroless's `nonroot`; numeric so that runAsNonRoot can verify it.
USER 65532:65532
ENV PORT=8000
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/orders-service"]
