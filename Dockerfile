# The server's image: a static binary on an empty base, run as a numeric non-root user, with no shell or anything else
# to run in it. deploy/deployment.yaml runs it with a read-only root filesystem and runAsNonRoot.
#
#   docker build -t tenancy-apiserver:latest .     (or: podman build -t tenancy-apiserver:latest .)

# Build: on Alpine the host target is musl, and Rust links musl binaries statically, so the release build CI runs
# (tests/env/up.sh with TENANCY_PROFILE=release: benches and the soak test) is unchanged and its output static.
FROM rust:1.95-alpine AS build
# A C compiler and musl's headers for ring's C and assembly parts; CA certificates for the final image.
RUN apk add --no-cache gcc musl-dev ca-certificates
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tenancy-apiserver \
    && if readelf -l target/release/tenancy-apiserver | grep -q 'program interpreter'; then \
         echo 'tenancy-apiserver is not statically linked' >&2; exit 1; \
       fi \
    && mkdir -p /out/etc/ssl/certs \
    && cp target/release/tenancy-apiserver /out/tenancy-apiserver \
    && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/

FROM scratch
COPY --from=build /out/ /
# Numeric, so that the kubelet can check runAsNonRoot without a passwd file (there is none).
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/tenancy-apiserver"]
CMD ["serve"]
