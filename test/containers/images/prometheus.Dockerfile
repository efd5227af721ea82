# Local stand-in for prom/prometheus: the prometheus binary scripts/install.sh builds (with Consul
# service discovery), on the Debian base.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
COPY bin/prometheus /usr/local/bin/prometheus
RUN mkdir -p /prometheus /etc/prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
