# The server's image: a static binary on an empty base, run as a numeric non-root user, with no shell or anything else
# to run in it. deploy/deployment.yaml runs it with a read-only root filesystem and runAsNonRoot.
#
#   docker build -t tenancy-apiserver:0.1.0 .     (or podman; the tag deploy/ and the chart run: Cargo.toml's version)

# Build: deploy/build-binary.sh, the release build CI runs too (tests/run.sh), with its check that the binary is static.
# Here it builds for musl (Alpine's own target, so no cross toolchain), which Rust links statically.
FROM rust:1.95-alpine AS build
# A C compiler, make and musl's headers for ring's C and assembly parts and jemalloc (gcc brings binutils' readelf for
# the static check);
# CA certificates for the final image.
RUN apk add --no-cache gcc make musl-dev ca-certificates
WORKDIR /src
COPY . .
# Its stdout is the binary's path alone (cargo reports on stderr).
RUN bin="$(deploy/build-binary.sh "$(uname -m)-unknown-linux-musl")" \
    && mkdir -p /out/etc/ssl/certs \
    && cp "$bin" /out/tenancy-apiserver \
    && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/

FROM scratch
COPY --from=build /out/ /
# Numeric, so that the kubelet can check runAsNonRoot without a passwd file (there is none).
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/tenancy-apiserver"]
CMD ["serve"]
