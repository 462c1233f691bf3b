"""Google Cloud's label rules, shared by the client and the component image.

Pipeline jobs (submission.py, on the submitting machine) and model versions
(vertex_pusher.py, inside the Pusher's container) carry labels that Google
Cloud checks with the same rules. This module holds those rules and imports
nothing but pydantic, so that the Pusher's executor does not have to import
the client-side submission code to follow them.
"""

import hashlib
import re
from typing import Annotated, Dict

from pydantic import AfterValidator

# Google Cloud's label rules, restricted to ASCII (the APIs also accept
# international lowercase letters; nothing here needs them).
MAX_LABELS = 64
KEY_RULES = ('start with a lowercase letter, then at most 62 lowercase '
             'letters, digits, "_" or "-"')

_LABEL_KEY = re.compile(r'[a-z][a-z0-9_-]{0,62}')
_LABEL_VALUE = re.compile(r'[a-z0-9_-]{0,63}')
_NOT_LABEL_CHARACTERS = re.compile(r'[^a-z0-9_-]+')


def label_value(text: str) -> str:
  """`text` as a Google Cloud label value: lowercase, [a-z0-9_-], <= 63 long."""
  return _NOT_LABEL_CHARACTERS.sub('-', text.lower())[:63]


def short_hash(text: str, length: int = 16) -> str:
  """A label-safe digest of `text` (hex sha256, `length` characters).

  16 hex characters are 64 bits: two different model URIs share a digest
  with a probability of about n**2 / 2**65 for n URIs, negligible here.
  """
  return hashlib.sha256(text.encode('utf-8')).hexdigest()[:length]


def _label_key(key: str) -> str:
  if not _LABEL_KEY.fullmatch(key):
    raise ValueError(f"breaks Google Cloud's label rules: {KEY_RULES}")
  return key


def _label_value(value: str) -> str:
  if not _LABEL_VALUE.fullmatch(value):
    raise ValueError(
        f"is {value!r}, which breaks Google Cloud's label rules: use at most "
        '63 lowercase letters, digits, "_" or "-" (label_value() makes any '
        'text one)')
  return value


def _at_most_max_labels(labels: Dict[str, str]) -> Dict[str, str]:
  if len(labels) > MAX_LABELS:
    raise ValueError(f'has {len(labels)} labels: Google Cloud allows at most '
                     f'{MAX_LABELS}')
  return labels


# A label key, as a pydantic type: a dict with these keys reports the key that
# breaks the rules (validation.py words it).
LabelKey = Annotated[str, AfterValidator(_label_key)]

# A label value that is already valid (job labels); free text goes through
# label_value() first.
LabelValue = Annotated[str, AfterValidator(_label_value)]

# Labels whose values are valid already, at most MAX_LABELS of them.
Labels = Annotated[Dict[LabelKey, LabelValue],
                   AfterValidator(_at_most_max_labels)]
