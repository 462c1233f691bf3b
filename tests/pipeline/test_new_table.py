"""`repairml init`: kinds, ids, labels, the written configuration and schema,
each input error, and (slow) two tables that are not the sessions data going
from `init` to a pushed model through the real local pipeline."""

import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

import cli
from pipeline import new_table
from pipeline.config import load_config
from pipeline.new_table import ColumnProfile

# --- Two tables that are not the sessions data -----------------------------
# Each label is a rule on the features; the observed label misses a true
# fault 5% of the time and adds a spurious one 0.5% of the time, so the
# rules themselves are the best predictor there is (the oracle) and score
# below 1.

LABEL_MISS, LABEL_SPURIOUS = 0.05, 0.005


def _noisy_labels(rules, rng):
  names = list(rules)
  truth = np.stack([rules[n] for n in names], axis=1)
  observed = np.where(truth, rng.random(truth.shape) > LABEL_MISS,
                      rng.random(truth.shape) < LABEL_SPURIOUS)
  rows = [[names[j] for j in np.flatnonzero(row)] for row in observed]
  return rows, truth, observed


def sensor_table(rows: int, seed: int):
  """Readings of machine units, numbers only; faults are thresholds on them."""
  rng = np.random.default_rng(seed)
  temp = rng.normal(70, 10, rows)
  temp_missing = rng.random(rows) < 0.05
  pressure = rng.normal(2.2, 0.4, rows)
  vibration = rng.gamma(2.0, 0.2, rows)
  current = rng.normal(10, 2, rows)
  rpm = rng.integers(300, 5000, rows)
  rules = {
      'fault:overheat': (temp > 85) & ~temp_missing,
      'fault:overpressure': pressure > 2.8,
      'fault:bearing': (vibration > 0.6) & (rpm > 3000),
      'fault:short': current > 13.5,
      'fault:stall': (rpm < 900) & (current > 10),
      'fault:temp_sensor': temp_missing,  # the reading is missing
  }
  labels, truth, observed = _noisy_labels(rules, rng)
  span = np.arange(rows) % 2
  table = pa.table({
      'unit_id': np.arange(100_000, 100_000 + rows),
      'temp_a': pa.array(np.where(temp_missing, np.nan, temp),
                         from_pandas=True),
      'pressure_b': pressure, 'vibration_c': vibration, 'current_d': current,
      'rpm_e': rpm, 'span': span,
      'reading_date': [f'2026-03-0{s + 1}' for s in span],
      'faults': pa.array(labels, pa.list_(pa.string())),
  })
  return table, truth, observed


BIKE_TYPES = ['road', 'mtb', 'city', 'ebike', 'cargo']
CODES = [f'E{i:02d}' for i in range(1, 13)]


def ticket_table(rows: int, seed: int):
  """Bike-shop repair tickets, categories and lists only; fixes follow codes,
  tags and the bike type."""
  rng = np.random.default_rng(seed)
  bike = rng.choice(BIKE_TYPES, rows)
  region = rng.choice(['north', 'south', 'east', 'west'], rows)
  channel = rng.choice(['shop', 'online', 'phone'], rows, p=[0.6, 0.3, 0.1])
  codes = [sorted(rng.choice(CODES, rng.integers(0, 4), replace=False))
           for _ in range(rows)]
  tags = [sorted(rng.choice(['noise', 'flat', 'wobble', 'rust'],
                            rng.integers(0, 3), replace=False))
          for _ in range(rows)]

  def has(lists, value):
    return np.array([value in row for row in lists])

  ebike = bike == 'ebike'
  rules = {
      'fix:true_wheel': has(codes, 'E01') | has(tags, 'wobble'),
      'fix:replace_tube': has(tags, 'flat'),
      'fix:bleed_brakes': has(codes, 'E02'),
      # The same code means a different fix on an e-bike: an interaction.
      'fix:replace_motor_controller': has(codes, 'E03') & ebike,
      'fix:adjust_derailleur': has(codes, 'E03') & ~ebike,
      'fix:replace_chain': has(codes, 'E04') | (has(tags, 'rust') &
                                                (bike == 'city')),
      'fix:update_firmware': has(codes, 'E05') & ebike,
      'fix:replace_bearing': has(codes, 'E06') & has(tags, 'noise'),
  }
  labels, truth, observed = _noisy_labels(rules, rng)
  table = pa.table({
      'ticket_id': [f'T-{i:06d}' for i in range(rows)],
      'bike_type': bike, 'region': region, 'channel': channel,
      'codes': pa.array(codes, pa.list_(pa.string())),
      'tags': pa.array(tags, pa.list_(pa.string())),
      'fixes': pa.array(labels, pa.list_(pa.string())),
  })
  return table, truth, observed


def _write_spans(table, directory, spans=2):
  for span in range(spans):
    os.makedirs(f'{directory}/span-{span}', exist_ok=True)
    part = table.filter(pa.array(np.arange(table.num_rows) % spans == span))
    pq.write_table(part, f'{directory}/span-{span}/part.parquet')


def _f1(truth, predicted):
  tp = (truth & predicted).sum(axis=0)
  fp = (~truth & predicted).sum(axis=0)
  fn = (truth & ~predicted).sum(axis=0)
  return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def quality_floor(truth, observed) -> float:
  """Halfway from the no-information macro F1 to the rules' own (the best
  predictor): a model must have learnt most of the rules to pass."""
  shares = observed.mean(axis=0)
  no_information = np.mean(2 * shares / (1 + shares))
  oracle = np.mean(_f1(observed, truth))
  return no_information + 0.5 * (oracle - no_information)


# --- Helpers ---------------------------------------------------------------

@pytest.fixture
def workdir(tmp_path, monkeypatch):
  """init writes configs/, schema/ and runs/ relative to the working directory."""
  monkeypatch.chdir(tmp_path)
  return tmp_path


def _init(capsys, *args):
  code = new_table.main(list(args))
  out, err = capsys.readouterr()
  return code, out, err


def _expect_error(capsys, *args, fragments):
  code, out, err = _init(capsys, *args)
  assert code == 2, (out, err)
  # Nothing but where the libraries' output went, once init reads the data.
  assert out in ('', 'log: runs/d/logs/repairml.log\n', 'log: runs/c/logs/'
                 'repairml.log\n'), out
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('repairml init: '), err
  assert 'Traceback' not in err
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]


def _profile(**overrides):
  values = dict(name='x', dtype='float', rows=100, present=100, distinct=80,
                max_values=1, is_list=False)
  values.update(overrides)
  return ColumnProfile(**values)


def _small_table(rows=60, **columns):
  table = {'row_id': [f'R-{i}' for i in range(rows)],
           'size': [float(i % 7) for i in range(rows)],
           'color': [['red', 'blue', 'green'][i % 3] for i in range(rows)],
           'labels': pa.array([['a'] if i % 2 else ['b'] for i in range(rows)],
                              pa.list_(pa.string()))}
  table.update(columns)
  return pa.table(table)


def _write(table, path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pq.write_table(table, path)


# --- Kind inference --------------------------------------------------------

@pytest.mark.parametrize('profile, kind, detail', [
    (_profile(), 'numeric', 'float'),
    (_profile(dtype='int', present=90), 'numeric', 'int, 10% missing'),
    (_profile(dtype='string', distinct=4), 'categorical', '4 values'),
    (_profile(dtype='string', distinct=12, is_list=True, max_values=3),
     'multivalent', 'lists of strings: 12 values, up to 3 per row'),
    (_profile(dtype='int', distinct=5, is_list=True), 'skipped',
     'a list of numbers'),
    (_profile(name='span', dtype='int', distinct=4), 'skipped', 'span'),
    (_profile(dtype='string', distinct=3, date_like=True), 'skipped',
     'a date'),
    (_profile(dtype='string', distinct=95), 'skipped',
     'an identifier or free text'),
    (_profile(distinct=1, top_value=('7', 100)), 'skipped', "constant: "
     "always '7'"),
    (_profile(dtype='empty', present=0, distinct=0), 'skipped',
     'always empty'),
])
def test_column_kind(profile, kind, detail):
  got_kind, got_detail = new_table.column_kind(profile)
  assert got_kind == kind
  assert detail in got_detail


def test_a_string_column_is_categorical_up_to_half_its_rows_distinct():
  assert new_table.column_kind(_profile(dtype='string', distinct=50))[0] == (
      'categorical')
  assert new_table.column_kind(_profile(dtype='string', distinct=51))[0] == (
      'skipped')


@pytest.mark.parametrize('pattern, root, relative', [
    ('mydata/span-*/*.parquet', 'mydata', 'span-*/*.parquet'),
    ('mydata/*.csv', 'mydata', '*.csv'),
    ('/abs/data/x.parquet', '/abs/data', 'x.parquet'),
    ('*.csv', '.', '*.csv'),
])
def test_a_pattern_splits_into_root_and_split_pattern(pattern, root, relative):
  assert new_table.split_pattern(pattern) == (root, relative)


def test_the_floor_is_the_macro_f1_of_recommending_every_label():
  # Shares 0.5 and 0.1: F1 of always recommending is 2p / (1 + p).
  assert new_table.no_information_macro_f1({'a': 50, 'b': 10}, 100) == (
      pytest.approx((2 / 3 + 0.2 / 1.1) / 2))


def test_a_small_table_trains_shorter_in_smaller_batches():
  small, small_tuning = new_table.training_budget(3_000)
  large, _ = new_table.training_budget(50_000)
  assert small == {'train_steps': 400, 'eval_steps': 5, 'batch_size': 64}
  assert small_tuning['steps_per_trial'] == 200
  assert large['batch_size'] == 256 and large['train_steps'] <= 2000
  assert large['train_steps'] > small['train_steps']


# --- A table in, a configuration and a schema out --------------------------

def test_init_writes_a_loadable_configuration_and_a_curated_schema(
    workdir, capsys):
  table = _small_table(
      reading_date=[f'2026-01-0{1 + i % 3}' for i in range(60)],
      codes=pa.array([['x', 'y'][: i % 3] for i in range(60)],
                     pa.list_(pa.string())),
      note=[f'free text {i}' for i in range(60)],
      weights=pa.array([[1.0, 2.0]] * 60, pa.list_(pa.float64())))
  _write(table, 'shop/2026/part.parquet')
  code, out, _ = _init(capsys, '--data', 'shop/*/*.parquet', '--label',
                       'labels', '--out', 'configs/shop.yaml')
  assert code == 0
  assert out.startswith('log: runs/shop/logs/repairml.log\n')
  column_lines = out.split('\n\n')[0].splitlines()[2:]
  kinds = {line.split()[0]: line.split()[1] for line in column_lines}
  assert kinds == {'row_id': 'id', 'size': 'numeric', 'color': 'categorical',
                   'labels': 'label', 'reading_date': 'skipped',
                   'codes': 'multivalent', 'note': 'skipped',
                   'weights': 'skipped'}
  assert 'wrote configs/shop.yaml' in out and 'wrote schema/shop.pbtxt' in out
  assert 'review before trusting a run' in out

  config = load_config('configs/shop.yaml')
  assert config.pipeline_name == 'shop'
  assert (config.data.format, config.data.root, config.data.pattern) == (
      'parquet', str(workdir / 'shop'), '*/*.parquet')
  assert config.data.id_column == 'row_id'
  assert config.features.numeric == ['size']
  assert config.features.categorical == ['color']
  assert config.features.multivalent == ['codes']
  assert config.features.max_values_per_row == 2
  assert config.label.column == 'labels'
  assert config.label.vocabulary == ['a', 'b']
  assert config.slices == [['color']]
  assert config.schema == str(workdir / 'schema' / 'shop.pbtxt')
  assert config.paths.serving_dir == str(workdir / 'runs' / 'shop' / 'serving')
  assert config.paths.metadata == str(workdir / 'runs' / 'shop' /
                                      'metadata.sqlite')
  # Both labels are on half the rows: recommending both scores 2/3.
  assert config.evaluation.macro_f1_lower_bound == 0.67

  schema = text_format.Parse((workdir / 'schema' / 'shop.pbtxt').read_text(),
                             schema_pb2.Schema())
  features = {f.name: f for f in schema.feature}
  assert [f.name for f in schema.feature] == [
      'row_id', 'reading_date', 'note', 'weights', 'color', 'size', 'codes',
      'labels']
  assert list(schema.default_environment) == ['TRAINING', 'SERVING']
  serving_absent = {name for name, f in features.items()
                    if 'SERVING' in f.not_in_environment}
  assert serving_absent == {'labels', 'reading_date', 'note', 'weights'}
  domains = {d.name: list(d.value) for d in schema.string_domain}
  assert domains == {'color': ['blue', 'green', 'red'], 'codes': ['x', 'y'],
                     'labels': ['a', 'b']}
  assert features['color'].domain == 'color'
  assert not features['row_id'].HasField('domain')
  assert not features['reading_date'].HasField('domain')
  color = features['color']
  assert color.skew_comparator.infinity_norm.threshold == 0.05
  assert color.drift_comparator.infinity_norm.threshold == 0.05
  assert color.presence.min_fraction == 1.0
  assert features['labels'].distribution_constraints.min_domain_mass == 1.0
  # Lists may have any length: TFDV would have fixed codes at 1 to 2 values.
  assert features['codes'].value_count.min == 0
  assert not features['codes'].value_count.HasField('max')
  assert features['row_id'].shape.dim[0].size == 1
  # codes is in 40 of 60 rows: a 10% split may well have none of them.
  assert features['codes'].presence.min_count == 0
  assert features['color'].presence.min_count == 1


def test_without_id_the_one_unique_id_named_column_is_chosen(workdir, capsys):
  _write(_small_table().rename_columns(
      ['serial_id', 'size', 'color', 'labels']), 'd/part.parquet')
  code, out, _ = _init(capsys, '--data', 'd/*.parquet', '--label', 'labels')
  assert code == 0
  assert re.search(r'serial_id\s+id\s+.*no --id given', out)
  # Without --out the name is the data directory's.
  assert load_config('configs/d.yaml').data.id_column == 'serial_id'


def test_a_csv_table_has_one_label_per_row(workdir, capsys):
  os.makedirs('csvdata')
  with open('csvdata/part.csv', 'w', encoding='utf-8') as f:
    f.write('case_id,weight,shape,outcome\n')
    for i in range(60):
      outcome = ['ok', 'bent', ''][i % 3]
      f.write(f'{i},{i % 9 if i % 10 else ""},{["round", "flat"][i % 2]},'
              f'{outcome}\n')
  code, out, _ = _init(capsys, '--data', 'csvdata/*.csv', '--label', 'outcome',
                       '--id', 'case_id', '--out', 'configs/cases.yaml')
  assert code == 0, out
  config = load_config('configs/cases.yaml')
  assert config.data.format == 'csv'
  assert config.features.numeric == ['weight']
  assert config.features.categorical == ['shape']
  assert config.label.vocabulary == ['bent', 'ok']


# --- Errors: one line, what and where and what to do, exit code 2 ----------

def test_no_files_match(workdir, capsys):
  _expect_error(capsys, '--data', 'nowhere/*.parquet', '--label', 'labels',
                fragments=['nowhere/*.parquet', 'no files match'])


def test_no_label_column(workdir, capsys):
  _write(_small_table(), 'd/part.parquet')
  _expect_error(capsys, '--data', 'd/*.parquet', '--label', 'repairs',
                fragments=['--label repairs', 'no such column',
                           'row_id, size, color, labels'])


def test_a_label_that_is_not_a_list_of_strings(workdir, capsys):
  _write(_small_table(labels=['a', 'b'] * 30), 'd/part.parquet')
  _expect_error(capsys, '--data', 'd/*.parquet', '--label', 'labels',
                fragments=['not a list of strings', 'list<string>'])
  _write(_small_table(labels=pa.array([[1], [2]] * 30, pa.list_(pa.int64()))),
         'e/part.parquet')
  _expect_error(capsys, '--data', 'e/*.parquet', '--label', 'labels',
                fragments=['not a list of strings'])


def test_a_csv_label_cannot_be_a_list(workdir, capsys):
  os.makedirs('c')
  with open('c/part.csv', 'w', encoding='utf-8') as f:
    f.write('case_id,size,labels\n')
    f.writelines(f'{i},{i},a|b\n' for i in range(20))
  _expect_error(capsys, '--data', 'c/*.csv', '--label', 'labels', '--id',
                'case_id', fragments=['CSV', 'one label per row', 'parquet'])


def test_a_csv_header_must_not_be_quoted(workdir, capsys):
  os.makedirs('c')
  with open('c/part.csv', 'w', encoding='utf-8') as f:
    f.write('"case_id","labels"\n1,"a"\n2,"b"\n')
  _expect_error(capsys, '--data', 'c/*.csv', '--label', 'labels',
                fragments=['c/part.csv', 'quotes its column names',
                           '"case_id"', 'unquoted'])


def test_an_empty_table(workdir, capsys):
  _write(_small_table().slice(0, 0), 'd/part.parquet')
  _expect_error(capsys, '--data', 'd/*.parquet', '--label', 'labels',
                fragments=['the table is empty', 'd/part.parquet'])


def test_an_id_column_with_duplicates(workdir, capsys):
  _write(_small_table(row_id=[f'R-{i % 50}' for i in range(60)]),
         'd/part.parquet')
  _expect_error(capsys, '--data', 'd/*.parquet', '--label', 'labels', '--id',
                'row_id', fragments=['--id row_id', '10 rows', 'repeat an id',
                                     'in 2 rows'])


def test_without_id_and_no_unique_column_the_error_says_why_it_is_needed(
    workdir, capsys):
  _write(_small_table(row_id=['same'] * 60), 'd/part.parquet')
  _expect_error(capsys, '--data', 'd/*.parquet', '--label', 'labels',
                fragments=['no --id given', 'splits train/eval/test',
                           'data.id_column', 'pass --id COLUMN'])


def test_out_exists_needs_force(workdir, capsys):
  _write(_small_table(), 'd/part.parquet')
  assert _init(capsys, '--data', 'd/*.parquet', '--label', 'labels')[0] == 0
  _expect_error(capsys, '--data', 'd/*.parquet', '--label', 'labels',
                fragments=['configs/d.yaml exists', '--force'])
  # A curated schema is protected as well, even without its configuration.
  os.remove('configs/d.yaml')
  _expect_error(capsys, '--data', 'd/*.parquet', '--label', 'labels',
                fragments=['schema/d.pbtxt exists', '--force'])
  assert _init(capsys, '--data', 'd/*.parquet', '--label', 'labels',
               '--force')[0] == 0


def test_the_id_cannot_be_the_label(workdir, capsys):
  _write(_small_table(), 'd/part.parquet')
  _expect_error(capsys, '--data', 'd/*.parquet', '--label', 'labels', '--id',
                'labels', fragments=['--id labels', 'it is the label column'])


def test_earlier_runs_under_the_name_are_pointed_out(workdir, capsys):
  _write(_small_table(), 'd/part.parquet')
  os.makedirs('runs/d')
  open('runs/d/metadata.sqlite', 'w', encoding='utf-8').close()
  code, out, _ = _init(capsys, '--data', 'd/*.parquet', '--label', 'labels')
  assert code == 0
  assert 'runs/d holds earlier runs' in out


def test_files_with_different_columns(workdir, capsys):
  _write(_small_table(), 'd/span-0/part.parquet')
  _write(_small_table(size=[str(i) for i in range(60)]),
         'd/span-1/part.parquet')
  _expect_error(capsys, '--data', 'd/*/*.parquet', '--label', 'labels',
                fragments=["d/span-1/part.parquet: column 'size' is string, "
                           'but double in d/span-0/part.parquet'])


def test_a_column_example_gen_cannot_convert(workdir, capsys):
  _write(_small_table(seen=pa.array([0] * 60, pa.timestamp('s'))),
         'd/part.parquet')
  _expect_error(capsys, '--data', 'd/*.parquet', '--label', 'labels',
                fragments=["'seen'", 'timestamp', "'YYYY-MM-DD'"])


def test_one_label_name_is_not_a_multi_label_problem(workdir, capsys):
  _write(_small_table(labels=pa.array([['a']] * 60, pa.list_(pa.string()))),
         'd/part.parquet')
  _expect_error(capsys, '--data', 'd/*.parquet', '--label', 'labels',
                fragments=['1 distinct label name', 'at least two'])


def test_a_table_without_any_feature(workdir, capsys):
  _write(_small_table().drop(['size', 'color']), 'd/part.parquet')
  _expect_error(capsys, '--data', 'd/*.parquet', '--label', 'labels',
                fragments=['no column besides the id and the label',
                           'there are no others', 'at least one input'])


@pytest.mark.parametrize('name, is_id', [
    ('unit_id', True), ('ID', True), ('uuid', True), ('row_key', True),
    ('unitId', True), ('paid', False), ('valid', False), ('idle', False)])
def test_without_id_only_a_unique_column_named_like_an_id_is_chosen(
    name, is_id):
  source = new_table.Source('d/*.parquet', 'parquet', 'd', '*.parquet',
                            ['d/part.parquet'], [name, 'size'], {})
  profiles = {
      name: _profile(name=name, dtype='string', distinct=100),
      'size': _profile(name='size', distinct=100),  # unique, but a float
  }
  if is_id:
    assert new_table.choose_id(profiles, 'labels', source)[0] == name
  else:
    with pytest.raises(new_table.InitError,
                       match=f"only '{name}', which is not named like an id"):
      new_table.choose_id(profiles, 'labels', source)


def test_the_cli_runs_init(workdir, capsys):
  assert cli.main(['init', '--data', 'nowhere/*.csv', '--label', 'y']) == 2
  assert 'no files match' in capsys.readouterr().err


# --- Slow: init, then the real local pipeline ------------------------------

def _small_run(config_path: str) -> None:
  """What tests/e2e does to size a run small: few steps, one tuner trial.
  Only the training sections change; everything init decided stays."""
  with open(config_path, encoding='utf-8') as f:
    raw = yaml.safe_load(f)
  raw['training'].update(train_steps=300, eval_steps=5, batch_size=64)
  raw['tuning'].update(max_trials=1, steps_per_trial=20)
  with open(config_path, 'w', encoding='utf-8') as f:
    yaml.safe_dump(raw, f)


def _init_and_run(capsys, table_dir, label, *extra):
  import local_runner  # pylint: disable=g-import-not-at-top
  code, out, err = _init(capsys, '--data', f'{table_dir}/span-*/*.parquet',
                         '--label', label, *extra)
  assert code == 0, err
  config_path = f'configs/{table_dir}.yaml'
  _small_run(config_path)
  config = load_config(config_path)
  summary = local_runner.run_pipeline(config, 'run_summary.json')
  return config, summary, out


def _predict(model_dir, table, drop):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from pipeline.components.example_gen import row_to_example  # pylint: disable=g-import-not-at-top
  model = tf.saved_model.load(model_dir)
  rows = table.drop(drop).to_pylist()
  return model.signatures['serving_default'](examples=tf.constant(
      [row_to_example(row).SerializeToString() for row in rows]))


@pytest.mark.slow
def test_a_numeric_sensor_table_goes_from_init_to_a_pushed_model(
    workdir, capsys):
  table, truth, observed = sensor_table(3000, seed=3)
  _write_spans(table, 'sensors')
  config, summary, out = _init_and_run(capsys, 'sensors', 'faults')

  assert re.search(r'unit_id\s+id\b', out)
  assert config.features.numeric == ['temp_a', 'pressure_b', 'vibration_c',
                                     'current_d', 'rpm_e']
  assert config.features.categorical == config.features.multivalent == []
  assert len(config.label.vocabulary) == 6
  assert summary.status == 'pushed', summary.error
  floor = quality_floor(truth, observed)
  assert summary.metrics['macro_f1'] >= floor, (summary.metrics, floor)
  assert summary.metrics['macro_f1'] >= config.evaluation.macro_f1_lower_bound
  # The served model reads no label and none of the skipped columns.
  outputs = _predict(summary.pushed_model_dir, table.slice(0, 4),
                     ['faults', 'span', 'reading_date'])
  assert outputs['probabilities'].shape == (4, 6)


@pytest.mark.slow
def test_a_categorical_and_list_table_goes_from_init_to_a_pushed_model(
    workdir, capsys):
  table, truth, observed = ticket_table(3000, seed=4)
  _write_spans(table, 'tickets')
  config, summary, _ = _init_and_run(capsys, 'tickets', 'fixes', '--id',
                                     'ticket_id')

  assert config.features.numeric == []
  assert config.features.categorical == ['bike_type', 'region', 'channel']
  assert config.features.multivalent == ['codes', 'tags']
  assert config.slices == [['channel'], ['region'], ['bike_type']]
  assert summary.status == 'pushed', summary.error
  floor = quality_floor(truth, observed)
  assert summary.metrics['macro_f1'] >= floor, (summary.metrics, floor)
  assert set(summary.metrics['slices']) >= {'channel=shop', 'region=north',
                                            'bike_type=ebike'}
  outputs = _predict(summary.pushed_model_dir, table.slice(0, 4), ['fixes'])
  assert outputs['probabilities'].shape == (4, len(config.label.vocabulary))
