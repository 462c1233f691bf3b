"""The model's hyperparameters: their search space, and their defaults.

The Tuner searches this space; the Trainer takes the Tuner's best values, or the
configured defaults when tuning is off. Both read them through `resolve`, so the
model is always built from one plain dict.
"""

from typing import Any, Dict, Optional

import keras_tuner

from models import losses

NAMES = ('learning_rate', 'hidden_units', 'hidden_layers', 'embedding_dim',
         'dropout', 'loss')


def defaults(model_settings: Dict[str, Any]) -> Dict[str, Any]:
  """The configured hyperparameters (the `training` section of the Config)."""
  return {name: model_settings['training'][name] for name in NAMES}


def search_space(model_settings: Dict[str, Any]) -> keras_tuner.HyperParameters:
  """The space the Tuner explores; it starts from the configured defaults."""
  start = defaults(model_settings)
  hp = keras_tuner.HyperParameters()
  hp.Float('learning_rate', 1e-3, 1e-2, sampling='log',
           default=start['learning_rate'])
  # The configured values join the choices, so any valid configuration tunes.
  hp.Choice('hidden_units', sorted({64, 128, 256, start['hidden_units']}),
            default=start['hidden_units'])
  hp.Int('hidden_layers', 1, max(3, start['hidden_layers']),
         default=start['hidden_layers'])
  hp.Choice('embedding_dim', sorted({8, 16, 32, start['embedding_dim']}),
            default=start['embedding_dim'])
  hp.Float('dropout', 0.0, 0.3, step=0.1, default=start['dropout'])
  hp.Choice('loss', list(losses.LOSS_NAMES), default=start['loss'])
  return hp


def resolve(model_settings: Dict[str, Any],
            tuned: Optional[Dict[str, Any]]) -> Dict[str, Any]:
  """Hyperparameters for training: the Tuner's best if given, else defaults."""
  if not tuned:
    return defaults(model_settings)
  values = keras_tuner.HyperParameters.from_config(tuned).values
  return {**defaults(model_settings), **values}
