# The image docker-compose.yaml runs: the official Airflow image extended as its docs say
# ("Extending the image": https://airflow.apache.org/docs/docker-stack/build.html), plus the helm
# CLI that the helm_deploy step runs (llm_on_eks.kube.helm looks for it on PATH).
FROM apache/airflow:3.3.2-python3.11

# helm, from the official release tarball on get.helm.sh (helm publishes no image of its own to
# copy from; alpine/helm is a third party's). The version is the one in scripts/sandbox/versions.env,
# which the tests run: bump both together.
ARG HELM_VERSION=v4.3.1
# The tarball's sha256 is checked before it is unpacked. By default against the .sha256sum that
# helm publishes beside it, which catches a corrupt or truncated download; to also guard against a
# tampered download host, pin the value from the release notes (github.com/helm/helm/releases):
#   docker compose build --build-arg HELM_SHA256=<sha256 of helm-v4.3.1-linux-amd64.tar.gz>
ARG HELM_SHA256=""
# Set by BuildKit (amd64, arm64); the fallback serves the legacy builder. An empty $want (the
# checksum download failed) makes `sha256sum -c` fail too: never an unchecked install.
ARG TARGETARCH
USER root
RUN set -eu; \
    arch="${TARGETARCH:-amd64}"; \
    tgz="helm-${HELM_VERSION}-linux-${arch}.tar.gz"; \
    cd /tmp; \
    curl -fsSLO "https://get.helm.sh/${tgz}"; \
    want="${HELM_SHA256:-$(curl -fsSL "https://get.helm.sh/${tgz}.sha256sum" | cut -d' ' -f1)}"; \
    echo "${want}  ${tgz}" | sha256sum -c -; \
    tar -xzf "${tgz}" --strip-components=1 "linux-${arch}/helm"; \
    install -m 0755 helm /usr/local/bin/helm; \
    rm -f "${tgz}" helm; \
    helm version --short
USER airflow

# The project's pinned requirements, as the docs show: naming apache-airflow at the image's own
# version makes pip refuse, rather than silently swap Airflow, if requirements.txt ever pins
# another one (it pins 3.3.2, like the FROM line). The extras name what this stack needs besides
# our requirements (Celery + Redis, the FAB auth manager, Postgres); the image has them already,
# naming them makes pip resolve them together with our pins instead of breaking them unseen.
# requirements.txt also holds the test tools (pytest, moto, ruff, uv): kept, because it is the one
# lock file CI tests, and a hand-filtered copy would be an untested set; they cost disk, not behaviour.
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir "apache-airflow[celery,fab,postgres]==${AIRFLOW_VERSION}" -r /requirements.txt
