# The component image: every step of the pipeline runs in it on Vertex AI
# Pipelines (KubeflowV2DagRunner's default_image). It is TFX's own image plus
# the locked dependencies and the repairml packages, so the user code that
# Transform, Tuner and Trainer import by name (preprocessing.transform.
# preprocessing_fn, models.tuning.tuner_fn, models.training.run_fn) is installed.
# Build and push it with `make image` / `make push-image`.

# The tag must equal the `tfx==` pin in requirements.lock
# (tests/production/test_image.py checks it).
FROM gcr.io/tfx-oss-public/tfx:1.16.0

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
