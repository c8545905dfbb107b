# syntax=docker/dockerfile:1
# asyncapi-guard: a static Rust binary (glibc linked in) on distroless, run as non-root.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
# Build settings: mimalloc's exit without giving memory back (.cargo/config.toml says why).
COPY .cargo ./.cargo
COPY src ./src
# Declared targets must exist for Cargo to read the manifest; the example review is
# compiled into the binary (the self-signed quick start posts it).
COPY benches ./benches
COPY tests ./tests
COPY examples ./examples
# A static PIE on Linux (scripts/release-build says why), written to target/image/.
COPY scripts/release-build ./scripts/release-build
RUN scripts/release-build

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/image/asyncapi-guard /usr/local/bin/asyncapi-guard
# The chart runs it with runAsUser/runAsGroup 65532 and a read-only root file system.
USER 65532:65532
# The allocator (mimalloc, src/main.rs) without transparent huge pages from its first
# allocation: `serve` turns them off itself, but only once running, after the pages of
# start-up were taken 2 MiB at a time (4 MiB more RSS).
ENV MIMALLOC_ALLOW_THP=0
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/asyncapi-guard"]
CMD ["serve"]
