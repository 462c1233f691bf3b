"""What the Pusher leaves in a serving directory, as serving reads it.

What counts as a pushed version is models/versions.py's one definition,
shared with the Pusher and re-exported here. Each model says which features
its serving signature parses: in `assets/serving_features.json`
(models/export.py) or, for a model exported before that asset existed, in the
tf.Example parser of its `serving_default` graph, read back here. Online
serving (model_store.py) and batch prediction (batch.py) both read pushed
models through this module.

A serving directory or model may be a URL such as gs://bucket/serving: then
it is read through tf.io.gfile (`filesystem`), so that batch prediction runs
where the models are; a local path is read with the standard library, without
loading TensorFlow.
"""

import os
import re
from typing import Any, Dict, List, Optional

from models import versions
from models.versions import (  # pylint: disable=unused-import
    is_saved_model, latest_version, pushed_versions)

# TensorFlow is imported where a model is read: listing versions must not
# load it (its import prints to the terminal before any log redirection).
# pylint: disable=g-import-not-at-top

Features = Dict[str, Dict[str, Any]]


class UnreadableFeaturesError(ValueError):
  """The model does not say which features it reads."""


_URL = re.compile(r'^[a-z][a-z0-9+.-]*://')


def filesystem(path: str) -> versions.Filesystem:
  """How to read `path`: tf.io.gfile for a URL (gs://...), else the local
  filesystem (no TensorFlow import)."""
  if not _URL.match(path):
    return versions.LOCAL
  import tensorflow as tf
  gfile = tf.io.gfile
  return versions.Filesystem(
      isfile=lambda p: gfile.exists(p) and not gfile.isdir(p),
      isdir=gfile.isdir,
      # Object stores name a folder 'name/'.
      listdir=lambda p: [name.rstrip('/') for name in gfile.listdir(p)])


def model_features(model_dir: str) -> Features:
  """{name: {"dtype", "list"}} of the features the model's signature parses."""
  from models import export
  if filesystem(model_dir).isfile(os.path.join(
      model_dir, 'assets', export.SERVING_FEATURES_ASSET)):
    return export.load_serving_features(model_dir)
  return features_from_signature(model_dir)


def signature_outputs(model_dir: str) -> List[str]:
  """The output names of the model's serving_default, read from its
  saved_model.pb without loading the model."""
  import tensorflow as tf
  from google.protobuf import text_format
  from tensorflow.core.protobuf import saved_model_pb2
  saved_model = saved_model_pb2.SavedModel()
  binary = os.path.join(model_dir, 'saved_model.pb')
  if tf.io.gfile.exists(binary):
    with tf.io.gfile.GFile(binary, 'rb') as f:
      saved_model.ParseFromString(f.read())
  else:
    with tf.io.gfile.GFile(os.path.join(model_dir, 'saved_model.pbtxt')) as f:
      text_format.Parse(f.read(), saved_model)
  for meta_graph in saved_model.meta_graphs:
    if 'serving_default' in meta_graph.signature_def:
      return sorted(meta_graph.signature_def['serving_default'].outputs)
  return []


def features_from_signature(model_dir: str) -> Features:
  """The serving features, read from serving_default's ParseExampleV2 op.

  Sparse and ragged features may hold any number of values ("list"), dense
  ones a fixed number: the same description export.serving_features writes.
  """
  import tensorflow as tf
  signature = tf.saved_model.load(model_dir).signatures['serving_default']
  for function in signature.graph.as_graph_def().library.function:
    nodes = {node.name: node for node in function.node_def}
    for node in function.node_def:
      if node.op != 'ParseExampleV2':
        continue
      keys = [_constant_strings(nodes.get(node.input[i].split(':')[0]))
              for i in (2, 3, 4)]  # sparse_keys, dense_keys, ragged_keys
      types = [node.attr[name].list.type for name in
               ('sparse_types', 'Tdense', 'ragged_value_types')]
      if any(k is None for k in keys):
        break
      features = {}
      for names, dtypes, listed in zip(keys, types, (True, False, True)):
        for name, dtype in zip(names, dtypes):
          features[name] = {'dtype': tf.dtypes.as_dtype(dtype).name,
                            'list': listed}
      return features
  raise UnreadableFeaturesError(
      f'{model_dir}: the model has no assets/serving_features.json and its '
      'serving_default parses no tf.Examples that could say which features it '
      'reads; push a model exported by this version of repairml.')


def _constant_strings(node) -> Optional[List[str]]:
  import tensorflow as tf
  if node is None or node.op != 'Const':
    return None
  return [value.decode('utf-8') for value in
          tf.make_ndarray(node.attr['value'].tensor).reshape(-1).tolist()]
