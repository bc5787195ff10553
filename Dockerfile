# Caspian's image: the CLI; deploy/ runs `caspian watch` with it.
# No secret is baked in: git and carbon credentials and the spokes' kubeconfig are
# mounted from Secrets at run time (deploy/caspian.yaml).
FROM python:3.11-slim
# ssh-keygen and gpg sign placement commits when a signing key is configured.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client gnupg \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/caspian
COPY pyproject.toml constraints.txt README.md ./
COPY reconciler reconciler
COPY optimizer optimizer
COPY carbon carbon
COPY repo-template repo-template
RUN pip install --no-cache-dir -c constraints.txt -e . \
    && useradd --uid 65532 --home-dir /home/caspian --create-home caspian
USER 65532:65532
ENTRYPOINT ["caspian"]
