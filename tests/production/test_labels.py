"""Google Cloud's label rules, as pipeline jobs and model versions use them."""

import re

import pydantic
import pytest

from pipeline.production.labels import Labels, label_value, short_hash
from pipeline.production.validation import validated

LABELS = pydantic.TypeAdapter(Labels)


@pytest.mark.parametrize('text, value', [
    ('repairml-20260105030000', 'repairml-20260105030000'),
    ('2026-01-05T03:00:00.123456', '2026-01-05t03-00-00-123456'),
    ('Repair ML/v2.1+RC', 'repair-ml-v2-1-rc'),
    ('Feature/Label_Test.1', 'feature-label_test-1'),
    ('jane.doe@example.com', 'jane-doe-example-com'),
    ('a  b//c', 'a-b-c'),
    ('Grüße', 'gr-e'),
    ('under_score-dash', 'under_score-dash'),
    ('', ''),
    ('x' * 80, 'x' * 63),
])
def test_label_values_follow_google_cloud_rules(text, value):
  assert label_value(text) == value
  assert re.fullmatch(r'[a-z0-9_-]{0,63}', label_value(text))


def test_the_short_hash_is_a_stable_label_value():
  uri = 'gs://repairml-prod-pipelines/root/123/repairml-1/Trainer/model'

  assert short_hash(uri) == short_hash(uri)
  assert short_hash(uri) != short_hash(uri + '/')
  assert re.fullmatch(r'[0-9a-f]{16}', short_hash(uri))
  # The digest of a known string, so that a change of algorithm shows.
  assert short_hash('abc') == 'ba7816bf8f01cfea'


@pytest.mark.parametrize('labels, message', [
    ({'Git': 'x'}, "labels has the key 'Git', which breaks Google Cloud's "
     'label rules'),
    ({'1st': 'x'}, "labels has the key '1st', which breaks"),
    ({'git-branch': 'Feature/X'}, "labels.git-branch is 'Feature/X', which "
     "breaks Google Cloud's label rules: use at most 63 lowercase letters, "
     'digits, "_" or "-" (label_value() makes any text one)'),
    ({'note': 'x' * 64}, f"labels.note is '{'x' * 64}', which breaks"),
    ({'count': 3}, 'labels.count must be a string, got 3'),
    ({f'k{i}': 'v' for i in range(65)}, 'labels has 65 labels: Google Cloud '
     'allows at most 64'),
])
def test_labels_that_break_the_rules_are_refused(labels, message):
  with pytest.raises(ValueError) as raised:
    validated(LABELS, labels, 'labels.', ValueError)

  assert str(raised.value).startswith(message)


def test_valid_labels_pass():
  labels = {'git-commit': '0123456789ab', 'git-dirty': 'false', 'empty': ''}

  assert validated(LABELS, labels, 'labels.', ValueError) == labels
