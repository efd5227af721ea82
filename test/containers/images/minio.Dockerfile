# Local stand-in for minio/minio: the minio binary scripts/install.sh builds, and mc (the compose
# healthcheck runs `mc ready local` inside the MinIO container, as the official image allows).
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
COPY bin/minio bin/mc /usr/local/bin/
RUN mkdir -p /data
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/minio"]
CMD ["server", "/data"]
