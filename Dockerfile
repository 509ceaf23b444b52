# The homeserver in a container: `docker build -t homeserver .`, then
#   docker run -v hs-data:/data -e SERVER_NAME=example.org -p 8008:8008 homeserver
# (README "Container"). Data (config, signing key, SQLite file, media) lives in
# the /data volume; the server runs as an unprivileged user.
#
# Behind a proxy that re-signs TLS, pass its CA (PEM) for the build's downloads
# (used in the build stage only; the image trusts the base image's CAs):
#   docker build --build-arg EXTRA_CA_CERT="$(cat proxy-ca.crt)" .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/homeserver
COPY setup.cfg pyproject.toml README.md /src/
COPY homeserver /src/homeserver
COPY synapse_compat /src/synapse_compat
ARG EXTRA_CA_CERT=""
# optional extras: EXTRAS=s3 for S3 media storage (boto3)
ARG EXTRAS=""
RUN if [ -n "$EXTRA_CA_CERT" ]; then \
        cat /etc/ssl/certs/ca-certificates.crt > /tmp/ca.pem \
        && printf '%s\n' "$EXTRA_CA_CERT" >> /tmp/ca.pem && export PIP_CERT=/tmp/ca.pem; \
    fi; \
    /opt/homeserver/bin/pip install "/src${EXTRAS:+[$EXTRAS]}"

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 991 homeserver \
    && useradd --system --uid 991 --gid 991 --home-dir /data --no-create-home homeserver \
    && mkdir -p /data && chown homeserver:homeserver /data
COPY --from=build /opt/homeserver /opt/homeserver
COPY docker/entrypoint.sh /usr/local/bin/homeserver-entrypoint
ENV PATH=/opt/homeserver/bin:$PATH HOMESERVER_CONFIG=/data/homeserver.yaml PYTHONUNBUFFERED=1
USER homeserver
WORKDIR /data
VOLUME /data
EXPOSE 8008
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s \
    CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8008/health', timeout=4)"
ENTRYPOINT ["homeserver-entrypoint"]
CMD ["run"]
