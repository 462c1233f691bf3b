# Two images from one build context:
# - `serving` (make serving-image): the online prediction server, which the
#   Vertex Pusher deploys to a Vertex AI endpoint as a custom container;
# - the component image (make image), the last stage, so that a plain
#   `docker build .` builds it: every step of the pipeline runs in it on Vertex
#   AI Pipelines (KubeflowV2DagRunner's default_image). It is TFX's own image
#   plus the locked dependencies and the repairml packages, so the user code
#   that Transform, Tuner and Trainer import by name (preprocessing.transform.
#   preprocessing_fn, models.tuning.tuner_fn, models.training.run_fn) is
#   installed.
# BuildKit (Docker's default builder) builds only the stages its target needs.
# tests/production/test_image.py checks both stages.

# --- The serving image ---------------------------------------------------------
# `repairml serve` as Vertex AI runs a custom container
# (https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements,
# and ModelContainerSpec in the aiplatform SDK, aiplatform_v1/types/model.py):
# - the server listens on 0.0.0.0, on AIP_HTTP_PORT, which Vertex AI sets to
#   the first of the Model's containerSpec.ports (8080 unless set otherwise);
#   a TCP connection to it is the liveness check;
# - it answers AIP_HEALTH_ROUTE (GET, 200 once a model is loaded: Vertex AI
#   sends traffic only then) and AIP_PREDICT_ROUTE (POST of the body sent to
#   endpoints.predict, {"instances": [...], "parameters": {...}}; the answer
#   is {"predictions": [...]}), the routes the Pusher uploads the Model with;
# - it serves the SavedModel that Vertex AI copies from the Model's
#   artifact_uri and names in AIP_STORAGE_URI: at start, serving/
#   model_source.py copies it into <paths.serving_dir>/.aip-storage/.
# Vertex AI also sets AIP_ENDPOINT_ID, AIP_DEPLOYED_MODEL_ID, AIP_MODE and a
# few more, which the server does not need.

# Debian 12 (bookworm), where requirements.lock is known to install
# (PLATFORM.md), with CPython 3.10, which TFX 1.16 needs.
ARG SERVING_BASE_IMAGE=python:3.10-slim-bookworm

# The server's environment is built in a stage of its own: two locked packages
# (crcmod, pyfarmhash) come as sources only and need a compiler, which the
# serving image does not keep. The virtualenv moves to the serving image whole,
# at the same path, over the same Python.
FROM ${SERVING_BASE_IMAGE} AS serving-build

RUN python -c "import sys; assert sys.version_info[:2] == (3, 10), \
    'requirements.lock is compiled for Python 3.10, this image has ' + sys.version"
RUN apt-get update \
    && apt-get install --yes --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/repairml
ENV PATH=/opt/repairml/bin:$PATH

# The same locked environment as training, so that the server loads the
# SavedModel with the TensorFlow and TF Transform that wrote it. A layer of
# its own: it is rebuilt only when the lock changes.
WORKDIR /build
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir --disable-pip-version-check \
    -r requirements.lock

# The project, installed as a regular (non-editable) package: the same paths
# as the component image's (setup.py's packages and py_modules).
COPY setup.py cli.py kubeflow_runner.py local_runner.py ./
COPY data/ data/
COPY models/ models/
COPY pipeline/ pipeline/
COPY preprocessing/ preprocessing/
COPY serving/ serving/
COPY lineage/ lineage/
COPY collection/ collection/
RUN python -m pip install --no-cache-dir --disable-pip-version-check \
    --no-deps .

FROM ${SERVING_BASE_IMAGE} AS serving

# Unbuffered output, so that Cloud Logging shows the server's lines as they
# happen; the google.api_core warning is silenced as in the component image.
ENV PATH=/opt/repairml/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONWARNINGS=ignore::FutureWarning:google.api_core._python_version_support

COPY --from=serving-build /opt/repairml /opt/repairml

# The server runs as a user of its own, not as root.
RUN groupadd --system --gid 10001 repairml \
    && useradd --system --uid 10001 --gid repairml --create-home \
       --home-dir /home/repairml --shell /usr/sbin/nologin repairml

# configs/serving.yaml is the production configuration (vertex.yaml: the
# model name, the curated schema) with this image's paths: the serving
# directory, which the copy of the model goes into, and the log file, a link
# to stdout, because Vertex AI sends a container's stdout and stderr to Cloud
# Logging. Both belong to the server's user; the request log goes beside the
# log file.
WORKDIR /repairml
COPY configs/ configs/
COPY schema/ schema/
RUN mkdir -p /var/lib/repairml/serving /var/log/repairml \
    && ln -s /dev/stdout /var/log/repairml/repairml.log \
    && chown -R repairml:repairml /var/lib/repairml /var/log/repairml

# Fail the build, not the deployment, if the server or its configuration does
# not load. From /repairml, which holds no sources: the installed package is
# what imports.
RUN python -c "import serving.server, serving.model_source, serving.model_store" \
    && python -c "from pipeline.config import load_config; \
    load_config('configs/serving.yaml')"

# Numeric, so that Kubernetes can check that the user is not root.
USER 10001:10001

# The Vertex AI defaults, so that `docker run -p 8080:8080 -e
# AIP_STORAGE_URI=... IMAGE` behaves as on an endpoint; Vertex AI sets its own.
ENV AIP_HTTP_PORT=8080 \
    AIP_HEALTH_ROUTE=/health \
    AIP_PREDICT_ROUTE=/predict
EXPOSE 8080

# Exec form: the server is PID 1 and gets Vertex AI's SIGTERM itself. Vertex
# AI's containerSpec.args would replace the CMD, e.g. to serve another
# configuration; the Pusher sets none. --no-admin: nobody pins versions in a
# container (on 0.0.0.0 the admin routes are off anyway).
ENTRYPOINT ["repairml", "serve"]
CMD ["--config", "configs/serving.yaml", "--host", "0.0.0.0", "--no-admin"]

# --- The component image -------------------------------------------------------
# The tag must equal the `tfx==` pin in requirements.lock
# (tests/production/test_image.py checks it).
FROM gcr.io/tfx-oss-public/tfx:1.16.0 AS component

# Unbuffered output, so Vertex AI shows a step's log lines as they happen.
# google.api_core warns on every import that Python 3.10 is unsupported; the
# warning is harmless and floods the logs (see PLATFORM.md).
ENV PYTHONUNBUFFERED=1 \
    PYTHONWARNINGS=ignore::FutureWarning:google.api_core._python_version_support

WORKDIR /pipeline

# The lock is compiled for CPython 3.10 on x86-64 Linux. Fail here, with the
# reason, rather than with a resolver error or an ImportError on Vertex.
RUN python -c "import sys; assert sys.version_info[:2] == (3, 10), \
    'requirements.lock is compiled for Python 3.10, this image has ' + sys.version"

# The dependencies first, in their own layer: it is rebuilt only when the lock
# changes, not on every code change.
# pip rather than uv: `python -m pip` comes with the base image and installs
# into exactly the interpreter the entry point runs (the `pip` script of some
# TFX images belongs to another Python, tensorflow/tfx#6368), and nothing else
# has to be downloaded. The lock pins every package to one version, so pip has
# nothing to backtrack over; it resolves only to check that the set is
# consistent, and the packages the base image already has at the pinned
# version are kept.
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir --disable-pip-version-check \
    -r requirements.lock

# The project, installed as a regular (non-editable) package: the code lives in
# site-packages, the same way the Dataflow workers get it from setup.py. The
# list mirrors setup.py's packages and py_modules (the test checks it); the
# benchmarks are in neither: they run from a checkout.
COPY setup.py cli.py kubeflow_runner.py local_runner.py ./
COPY data/ data/
COPY models/ models/
COPY pipeline/ pipeline/
COPY preprocessing/ preprocessing/
COPY serving/ serving/
COPY lineage/ lineage/
COPY collection/ collection/
RUN python -m pip install --no-cache-dir --disable-pip-version-check \
    --no-deps . \
    && rm -rf build repairml.egg-info

# The configuration and the curated schema. Config paths are resolved against
# the working directory when the pipeline is compiled, and ImportSchemaGen reads
# the schema at that path inside this image: a pipeline compiled here, in
# /pipeline, finds schema/schema.pbtxt; one compiled elsewhere needs a gs:// URI.
COPY configs/ configs/
COPY schema/ schema/

# Fail the build, not a pipeline step, if the user code the components import
# by name does not import. It runs from / so that the installed package is what
# imports, not the sources in /pipeline.
RUN cd / && python -c "import preprocessing.transform, models.training, models.tuning"

# The command KubeflowV2DagRunner compiles into every step (KUBEFLOW_TFX_CMD in
# tfx/orchestration/kubeflow/v2/kubeflow_v2_dag_runner.py). The compiled spec
# sets it as the container command itself, so on Vertex this only documents it;
# it makes `docker run IMAGE --executor_class_path ...` behave like a step.
# It replaces the base image's Beam worker entry point (/opt/apache/beam/boot):
# this image is not meant as a Dataflow worker image; Dataflow gets the code
# through --setup_file=./setup.py.
ENTRYPOINT ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
