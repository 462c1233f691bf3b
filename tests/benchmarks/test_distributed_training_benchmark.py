"""The distributed-training benchmark's arithmetic: the steady speed it reads
from a chief's log, and the projection's formula."""

import pytest

from benchmarks import distributed_training as bench


def test_the_steady_speed_leaves_out_the_first_epoch(tmp_path):
  log = tmp_path / 'chief-0.log'
  log.write_text(
      'I1201 strategy_training.py:75] Epoch 0: 250 steps in 9.890 s, loss 1.\n'
      'noise\n'
      'I1201 strategy_training.py:75] Epoch 1: 250 steps in 3.000 s, loss 1.\n'
      'I1201 strategy_training.py:75] Epoch 2: 50 steps in 1.000 s, loss 1.\n')

  assert bench.steady_steps_per_second(str(log)) == pytest.approx(300 / 4.0)


def test_a_log_without_epochs_is_an_error(tmp_path):
  log = tmp_path / 'chief-0.log'
  log.write_text('nothing trained\n')

  with pytest.raises(RuntimeError, match='No epoch lines'):
    bench.steady_steps_per_second(str(log))


def test_the_projection_splits_compute_and_adds_the_ring():
  # 10 ms of compute; 2 MB of dense gradients and 1 MB of embedding rows at
  # 2 GB/s; 10 launches of 100 us per hop.
  one, two = bench.projection(0.010, 2_000_000, 1_000_000, 10, 100e-6,
                              (1, 2))
  assert (one['step_ms'], one['communication_ms'], one['speedup']) == (
      pytest.approx(10.0), 0.0, pytest.approx(1.0))
  # 2*(1/2)*2e6/2e9 = 1 ms; (1/2)*1e6/2e9 = 0.25 ms; 10*2*1*100us = 2 ms.
  assert two['communication_ms'] == pytest.approx(3.25)
  assert two['step_ms'] == pytest.approx(5.0 + 3.25)
  assert two['speedup'] == pytest.approx(10.0 / 8.25)
