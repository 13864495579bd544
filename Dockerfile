# One image for the twin and the bridges: `docker run orbitwin:local run ...`, `... bridge influx ...`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY twin ./twin
COPY bridges ./bridges
COPY dashboards ./dashboards
COPY orbitwin ./orbitwin
COPY firmware-sim ./firmware-sim
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin orbitwin \
    && mkdir -p /var/lib/orbitwin \
    && chown orbitwin /var/lib/orbitwin
COPY docker/healthcheck.py ./docker/healthcheck.py
USER orbitwin
ENTRYPOINT ["orbitwin"]
CMD ["--help"]
