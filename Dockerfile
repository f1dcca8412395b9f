# The headwise pipeline image for Kubeflow Pipelines: the official TFX 1.16 image (TensorFlow,
# TFX, Beam, TFMA, tf.Transform) plus this project, whose trainer code TFX imports by module path.
FROM tensorflow/tfx:1.16.0

WORKDIR /pipeline
COPY pyproject.toml README.md ./
COPY headwise/ headwise/
COPY pipeline/ pipeline/
COPY components/ components/
COPY trainer/ trainer/
COPY kubeflow/ kubeflow/
COPY schemas/ schemas/

# TFX and its stack come with the base image; install only this project on top of it.
RUN python -m pip install --no-cache-dir --no-deps -e . \
    && python -c "import trainer.run, components.evaluator, components.pusher"

ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1
# Kubeflow's launcher supplies the command; run as an unprivileged user.
USER 1000
