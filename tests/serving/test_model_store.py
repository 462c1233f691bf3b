"""The model store serves the newest complete version, reloads hot, and rolls back."""

import base64
import logging
import os
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from models import export
from pipeline.components.example_gen import row_to_example
from serving.instances import RequestError
from serving.model_store import (ModelLoadError, ModelStore, ServedModel,
                                 VersionNotFoundError)

NOT_AT_SERVING = ('repair_labels', 'session_date', 'span')


def instances_of(rows):
  return [{k: v for k, v in row.items() if k not in NOT_AT_SERVING}
          for row in rows]


def pipeline_examples(rows):
  """The rows as the pipeline's ExampleGen writes them, without labels."""
  return [row_to_example(instance).SerializeToString()
          for instance in instances_of(rows)]


def push(export_dir, serving_dir, version, thresholds=None):
  """Copies the exported model in as `version`, as the Pusher would; other
  asset thresholds tell versions apart in their metadata."""
  target = os.path.join(serving_dir, str(version))
  shutil.copytree(export_dir, target)
  if thresholds is not None:
    with open(os.path.join(target, 'assets', export.THRESHOLDS_ASSET), 'w',
              encoding='utf-8') as f:
      f.write(''.join(f'{t!r}\n' for t in thresholds))
  return target


def push_broken(serving_dir, version):
  """A version directory whose saved_model.pb is garbage."""
  target = os.path.join(serving_dir, str(version))
  os.makedirs(target)
  with open(os.path.join(target, 'saved_model.pb'), 'wb') as f:
    f.write(b'not a SavedModel')


def marked_thresholds(exported_model, version):
  return [round(version / 100 + 0.001 * j, 6)
          for j in range(len(exported_model.thresholds))]


@pytest.fixture(scope='module')
def in_process(exported_model):
  """The exported SavedModel's serving signature, called in this process."""
  loaded = tf.saved_model.load(exported_model.export_dir)
  signature = loaded.signatures['serving_default']
  return lambda serialized: {
      name: value.numpy() for name, value in
      signature(examples=tf.constant(serialized)).items()}


@pytest.fixture(scope='module')
def two_versions(exported_model, tmp_path_factory):
  """A store over versions 1 and 2, 2 loaded."""
  serving_dir = str(tmp_path_factory.mktemp('two_versions'))
  push(exported_model.export_dir, serving_dir, 1)
  push(exported_model.export_dir, serving_dir, 2,
       marked_thresholds(exported_model, 2))
  store = ModelStore(serving_dir)
  store.reload()
  return store


def test_only_complete_numeric_versions_are_listed(exported_model, tmp_path):
  push(exported_model.export_dir, str(tmp_path), 7)
  push(exported_model.export_dir, str(tmp_path), 12)
  shutil.copytree(exported_model.export_dir, tmp_path / '.staging-13')
  (tmp_path / '14').mkdir()                       # empty: not a SavedModel
  shutil.copytree(exported_model.export_dir, tmp_path / 'latest')

  assert ModelStore(str(tmp_path)).available_versions() == [7, 12]
  assert ModelStore(str(tmp_path / 'missing')).available_versions() == []


def test_the_newest_version_is_served_with_its_assets(two_versions,
                                                      exported_model):
  model = two_versions.current()

  assert model.version == 2
  assert model.path == os.path.join(two_versions.serving_dir, '2')
  assert model.label_names == exported_model.config.label.vocabulary
  assert model.thresholds == marked_thresholds(exported_model, 2)
  assert model.features == export.load_serving_features(
      exported_model.export_dir)
  assert model.signature_def['inputs']['examples']['dtype'] == 'DT_STRING'
  assert two_versions.versions() == [2]


def test_predict_equals_the_saved_model_on_the_pipelines_examples(
    two_versions, exported_model, in_process):
  model = two_versions.current()
  instances = instances_of(exported_model.held_out_rows)

  outputs = model.predict(model.serialized(instances))

  expected = in_process(pipeline_examples(exported_model.held_out_rows))
  assert set(outputs) == {'probabilities', 'recommended',
                          'recommendation_scores'}
  for name, value in expected.items():
    np.testing.assert_allclose(outputs[name], value, rtol=1e-6, atol=1e-7)
    assert outputs[name].shape == (6, len(model.label_names))


def test_a_missing_required_feature_names_the_instance(two_versions,
                                                       exported_model):
  model = two_versions.current()
  instances = instances_of(exported_model.held_out_rows[:3])
  del instances[2]['car_model']

  with pytest.raises(RequestError, match=r'instances\[2\]\.car_model: '
                     r'required, and missing'):
    model.predict(model.serialized(instances))


def test_an_older_version_is_loaded_on_demand_and_kept(two_versions):
  model = two_versions.get(1)

  assert model.version == 1
  assert two_versions.get(1) is model
  assert two_versions.versions() == [1, 2]
  assert two_versions.current().version == 2
  with pytest.raises(VersionNotFoundError, match='no version 3'):
    two_versions.get(3)


def test_hot_reload_swaps_in_a_new_version_and_keeps_the_old_one_working(
    exported_model, tmp_path, in_process):
  push(exported_model.export_dir, str(tmp_path), 1)
  store = ModelStore(str(tmp_path))
  old = store.reload()
  assert old.version == 1
  assert store.reload() is old                    # nothing new: no reload

  push(exported_model.export_dir, str(tmp_path), 2)
  shutil.copytree(exported_model.export_dir, tmp_path / '.staging-3')
  (tmp_path / '4').mkdir()
  new = store.reload()

  assert new.version == 2 and store.current() is new
  # A request that got the old version before the swap still completes.
  examples = pipeline_examples(exported_model.held_out_rows[:2])
  np.testing.assert_allclose(old.predict(examples)['probabilities'],
                             in_process(examples)['probabilities'], rtol=1e-6)


def test_a_broken_new_version_does_not_replace_the_served_one(
    two_versions, caplog):
  push_broken(two_versions.serving_dir, 3)
  try:
    with caplog.at_level(logging.ERROR, logger='repairml.serving'):
      assert two_versions.reload().version == 2
      assert two_versions.reload().version == 2

    assert two_versions.current().version == 2
    assert 'version 3' in two_versions.failures()[3]
    # Logged once, with the reason; not loaded again on every poll.
    errors = [r for r in caplog.records if r.getMessage().startswith(
        'Version 3 at ') and 'cannot be served' in r.getMessage()]
    assert len(errors) == 1
    with pytest.raises(ModelLoadError, match='version 3'):
      two_versions.pin(3)
    assert two_versions.current().version == 2 and two_versions.pinned is None
  finally:
    shutil.rmtree(os.path.join(two_versions.serving_dir, '3'))


def test_a_pinned_version_is_served_until_unpinned(exported_model, tmp_path):
  push(exported_model.export_dir, str(tmp_path), 1)
  push(exported_model.export_dir, str(tmp_path), 2)
  changes = []
  store = ModelStore(str(tmp_path), on_change=lambda m: changes.append(
      m.version))
  store.reload()

  assert store.pin(1).version == 1
  push(exported_model.export_dir, str(tmp_path), 3)
  assert store.reload().version == 1
  assert store.current().version == 1 and store.pinned == 1

  assert store.unpin().version == 3
  assert store.pinned is None
  assert changes == [2, 1, 3]
  with pytest.raises(VersionNotFoundError, match='no version 9'):
    store.pin(9)
  assert store.current().version == 3


def test_the_poller_picks_up_a_pushed_version(exported_model, tmp_path):
  push(exported_model.export_dir, str(tmp_path), 1)
  store = ModelStore(str(tmp_path))
  store.reload()
  store.start_polling(0.05)
  try:
    push(exported_model.export_dir, str(tmp_path), 2)
    deadline = time.monotonic() + 30
    while store.current().version != 2 and time.monotonic() < deadline:
      time.sleep(0.05)
    assert store.current().version == 2
  finally:
    store.stop_polling()
  assert not any(t.name == 'repairml-model-poller' and t.is_alive()
                 for t in threading.enumerate())


def test_a_model_without_its_features_asset_still_reads_json_rows(
    exported_model, tmp_path):
  """Models pushed before assets/serving_features.json existed: the
  features come from their serving signature's parser."""
  target = push(exported_model.export_dir, str(tmp_path), 1)
  os.remove(os.path.join(target, 'assets', export.SERVING_FEATURES_ASSET))
  model = ServedModel(1, target)
  rows = exported_model.held_out_rows[:2]

  # The types, without the schema's limits that only the asset holds.
  assert model.features == {
      name: {'dtype': spec['dtype'], 'list': spec['list']}
      for name, spec in export.load_serving_features(
          exported_model.export_dir).items()}
  examples = model.serialized(instances_of(rows))
  assert model.predict(examples)['probabilities'].shape == (2, 47)