# The one training image for managed training (SageMaker now, AWS Batch too): the `training`
# package and its pinned dependencies, entered through `python -m training.container MODE`.
# SageMaker runs it as `docker run IMAGE train` (the /opt/ml contract, training/container/);
# Batch passes its mode in the job definition's command. Built and pushed with
# `console image build` / `console image push` where a Docker engine exists.
FROM python:3.11.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/opt/program

WORKDIR /opt/program

# Dependencies first (the layer is reused while the lock is unchanged), exactly as pinned.
COPY requirements.lock /opt/program/requirements.lock
RUN pip install --no-deps -r /opt/program/requirements.lock

# Only the training package: the container never needs the console, remote or runtime checks.
COPY training /opt/program/training

# SageMaker mounts /opt/ml; the entry point refuses to train without the console's job token.
ENTRYPOINT ["python", "-m", "training.container"]
CMD ["train"]
