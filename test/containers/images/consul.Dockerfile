# Local stand-in for hashicorp/consul: the consul binary scripts/install.sh builds, on the Debian base.
# Built by test/containers (context: a directory holding bin/consul); used through compose.local.yml.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
COPY bin/consul /usr/local/bin/consul
RUN mkdir -p /consul/data
EXPOSE 8500 8300 8301 8302 8600
ENTRYPOINT ["/usr/local/bin/consul"]
CMD ["agent", "-dev", "-client=0.0.0.0"]
