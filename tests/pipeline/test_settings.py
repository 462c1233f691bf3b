"""The settings Transform, Tuner and Trainer receive for configs/local.yaml,
pinned to the JSON text. They are TFX execution properties, so they are part
of every component's cache key: another key order, or 2 where 2.0 was, would
invalidate every user's cache. Change the expected values only on purpose."""

import json
from pathlib import Path

import yaml

from pipeline import settings
from pipeline.config import load_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_YAML = PROJECT_ROOT / 'configs' / 'local.yaml'

FEATURES = {
    'numeric': ['build_year', 'mileage_km', 'battery_voltage',
                'coolant_temp_c', 'fuel_trim_pct'],
    'categorical': ['car_model', 'engine_type', 'country'],
    'multivalent': ['dtcs', 'symptoms'],
    'max_values_per_row': 8,
    'vocabulary_top_k': 1000,
    'crosses': [['dtcs', 'engine_type']],
}
TRAINING = {
    'train_steps': 2000, 'eval_steps': 20, 'batch_size': 256, 'seed': 42,
    'learning_rate': 0.003, 'hidden_units': 128, 'hidden_layers': 2,
    'embedding_dim': 16, 'dropout': 0.1, 'loss': 'binary_crossentropy',
    'focal_gamma': 2.0, 'early_stopping_patience': 3,
    'distribution': 'none',
}
TUNING = {'enabled': True, 'max_trials': 3, 'steps_per_trial': 1000}


def _label_vocabulary():
  with open(LOCAL_YAML, encoding='utf-8') as f:
    return yaml.safe_load(f)['label']['vocabulary']


def test_transform_settings_of_local_yaml_are_exactly_this_json():
  expected = {
      'features': FEATURES,
      'label_column': 'repair_labels',
      'label_vocabulary': _label_vocabulary(),
      'code_version': settings.code_version(settings.TRANSFORM_MODULE),
  }

  actual = settings.transform_settings(load_config(str(LOCAL_YAML)))

  # The JSON text, not the dicts: == would ignore key order and 2 vs 2.0.
  assert json.dumps(actual) == json.dumps(expected)


def test_model_settings_of_local_yaml_are_exactly_this_json():
  expected = {
      'features': FEATURES,
      'label_column': 'repair_labels',
      'label_vocabulary': _label_vocabulary(),
      # The transform settings' key, with the model code's hash.
      'code_version': settings.code_version(settings.TRAINER_MODULE),
      'training': TRAINING,
      'tuning': TUNING,
  }

  actual = settings.model_settings(load_config(str(LOCAL_YAML)))

  assert json.dumps(actual) == json.dumps(expected)


def test_an_integer_written_for_a_float_reaches_the_settings_as_a_float(
    tmp_path):
  with open(LOCAL_YAML, encoding='utf-8') as f:
    raw = yaml.safe_load(f)
  raw['training']['focal_gamma'] = 2
  raw['training']['dropout'] = 0
  path = tmp_path / 'run.yaml'
  path.write_text(yaml.safe_dump(raw), encoding='utf-8')

  training = settings.model_settings(load_config(str(path)))['training']

  assert json.dumps([training['focal_gamma'], training['dropout']]) == (
      '[2.0, 0.0]')
