"""Fixtures shared across test packages.

`exported_model`: a small but real exported SavedModel (Transform analysis
with TFT on 300 generated sessions, the Keras model trained for two steps,
exported with per-label thresholds), as the Pusher would push it; and the
same model exported with other thresholds (`other_export_dir`), whose
`recommended` outputs differ. Built once
per session; the model tests check the export, the serving tests serve it.

`mariadb`: a throwaway MariaDB server (tests/mariadb.py), started on first
use and shut down at the end of the session. `browser`: headless Chromium
driven by selenium (tests/chromium.py; `chromium.save_screenshot(browser,
name)` keeps a page in test-artifacts/screenshots/). Both fail, not skip, when
`make test-services` has not installed their programs.
"""

import collections
import functools
import math
import os
import shutil
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata
from tfx_bsl.public import tfxio

from data.generator import generate_sessions
from models import export, training
from models.model import build_model
from pipeline.components.example_gen import row_to_example
from pipeline.config import load_config
from pipeline.settings import model_settings
from preprocessing.transform import preprocessing_fn

# tests/chromium.py and tests/mariadb.py (pytest puts this folder on sys.path).
import chromium
from mariadb import MariaDbServer

# The collection job's tests need its own environment (.venv-spark, Python 3.12):
# `make test` runs them there, with tests/collection_job/pytest.ini.
collect_ignore = ['collection_job']

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LABEL = 'repair_labels'
SMALL_MODEL = {'learning_rate': 0.01, 'hidden_units': 8, 'hidden_layers': 1,
               'embedding_dim': 4, 'dropout': 0.0}


def session_rows(rows: int, seed: int):
  """Generated sessions as parquet-like rows: NaN readings are nulls."""
  def clean(value):
    if isinstance(value, np.ndarray):
      return list(value)
    if isinstance(value, float) and math.isnan(value):
      return None
    return value
  return [{k: clean(v) for k, v in row.items()}
          for row in generate_sessions(rows, seed).to_dict('records')]


def serialized(rows, drop=()):
  """Rows as a batch of serialized tf.Examples, without the `drop` columns."""
  return tf.constant([
      row_to_example({k: v for k, v in row.items() if k not in drop})
      .SerializeToString() for row in rows])


def _analyze(settings, schema, examples_path, output_dir, temp_dir):
  """What TFX's Transform writes: the transform graph and the raw metadata."""
  source = tfxio.TFExampleRecord(examples_path, schema=schema)
  with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=temp_dir):
    transform_fn = (
        (pipeline | source.BeamSource(), source.TensorAdapterConfig())
        # A partial of the importable function: Beam pickles it by name. A
        # lambda here would be pickled with this module's globals, the
        # session fixtures (a running browser among them) included.
        | tft_beam.AnalyzeDataset(
            functools.partial(preprocessing_fn, custom_config=settings)))
    _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    _ = (dataset_metadata.DatasetMetadata(schema)
         | tft_beam.WriteMetadata(
             os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR),
             pipeline))


# Spread over (0, 1) so that some labels are recommended and some not.
THRESHOLDS = [0.3 + 0.4 * j / 46 for j in range(47)]


# The thresholds of `other_export_dir`: the same model exported with these
# decides differently, so that two versions' answers tell them apart.
OTHER_THRESHOLDS = [1.0 - t for t in THRESHOLDS]

ExportedModel = collections.namedtuple(
    'ExportedModel', ['export_dir', 'keras_model', 'held_out_rows',
                      'thresholds', 'config', 'other_export_dir'])


@pytest.fixture(scope='session')
def exported_model(tmp_path_factory) -> ExportedModel:
  """A small exported model, and six held-out sessions to predict."""
  tmp = tmp_path_factory.mktemp('export')
  config = load_config(str(PROJECT_ROOT / 'configs' / 'local.yaml'))
  settings = model_settings(config)
  schema = text_format.Parse(
      (PROJECT_ROOT / 'schema' / 'schema.pbtxt').read_text(),
      schema_pb2.Schema())
  rows = session_rows(300, seed=8)
  examples_path = str(tmp / 'sessions.tfrecord')
  with tf.io.TFRecordWriter(examples_path) as writer:
    for example in serialized(rows).numpy():
      writer.write(example)
  transform_dir = str(tmp / 'transform_graph')
  _analyze(settings, schema, examples_path, transform_dir, str(tmp / 'tft'))
  transform_output = tft.TFTransformOutput(transform_dir)

  features = transform_output.transform_raw_features(tf.io.parse_example(
      serialized(rows), transform_output.raw_feature_spec()))
  model = build_model(settings,
                      training.vocabulary_sizes(settings, transform_output),
                      SMALL_MODEL)
  inputs = {i.name: features[i.name] for i in model.inputs}
  batches = tf.data.Dataset.from_tensor_slices(
      (inputs, features[LABEL + '_xf'])).batch(32).repeat()
  training.fit(model, batches, batches, train_steps=2, eval_steps=1)

  export_dir = str(tmp / 'serving_model')
  work_dir = str(tmp / 'model_run')
  os.makedirs(work_dir)
  export.export_serving_model(model, transform_output, settings, export_dir,
                              work_dir, label_thresholds=THRESHOLDS)
  other_export_dir = str(tmp / 'serving_model_other_thresholds')
  export.export_serving_model(model, transform_output, settings,
                              other_export_dir, work_dir,
                              label_thresholds=OTHER_THRESHOLDS)
  # The pusher copies only the SavedModel: it must not need anything else.
  shutil.rmtree(transform_dir)
  shutil.rmtree(work_dir)
  return ExportedModel(export_dir, model, session_rows(6, seed=9),
                       THRESHOLDS, config, other_export_dir)


@pytest.fixture(scope='session')
def mariadb(tmp_path_factory) -> MariaDbServer:
  """A MariaDB server of the tests' own on 127.0.0.1, with a database, a
  writer and a reader (random passwords); `mariadb.create_database(name)`
  makes another one for a test that needs it empty."""
  with MariaDbServer(str(tmp_path_factory.mktemp('mariadb'))) as server:
    yield server


@pytest.fixture(scope='session')
def browser():
  """Headless Chromium (selenium's Chrome driver), quit at the end."""
  driver = chromium.start_browser()
  try:
    yield driver
  finally:
    driver.quit()
