# The headwise pipeline image for Kubeflow Pipelines. It runs what the tests ran: Beam's own
# Python 3.10 SDK image at the lock's Beam version, then requirements.lock installed exactly as
# every local run and test installs it (no resolution: --no-deps), then this project, whose
# trainer code TFX imports by module path. The build fails if any installed distribution differs
# from the lock (python -m headwise.parity); tests/test_parity.py checks this file offline.
ARG BEAM_VERSION=2.74.0
# The model server that production runs (kubeflow/compile.py SERVING_IMAGE): the pipeline's
# InfraCheck loads every candidate in it before the push (components/infra_check.py).
ARG SERVING_IMAGE=tensorflow/serving:2.16.1
FROM ${SERVING_IMAGE} AS model_server
FROM apache/beam_python3.10_sdk:${BEAM_VERSION}
COPY --from=model_server /usr/bin/tensorflow_model_server /usr/local/bin/tensorflow_model_server

WORKDIR /pipeline
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir --no-deps -r requirements.lock

COPY pyproject.toml README.md ./
COPY headwise/ headwise/
COPY pipeline/ pipeline/
COPY components/ components/
COPY trainer/ trainer/
COPY kubeflow/ kubeflow/
COPY serving/ serving/
COPY cli/ cli/
COPY schemas/ schemas/
RUN python -m pip install --no-cache-dir --no-deps -e . \
    && python -m headwise.parity requirements.lock \
    && TF_USE_LEGACY_KERAS=1 python -c "import trainer.run, components.evaluator, components.pusher, serving.infra_check" \
    && tensorflow_model_server --version

ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1
# Kubeflow's launcher supplies the command (it replaces the Beam image's entrypoint); run as an
# unprivileged user.
USER 1000
