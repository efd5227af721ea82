# Local stand-in for minio/mc (the compose file's minio-bucket job sets its own entrypoint).
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
COPY bin/mc /usr/local/bin/mc
ENTRYPOINT ["/usr/local/bin/mc"]
