"""What the user sees while a local run works: one line per component.

TF, absl and Beam write a great deal of noise. During a run the process's
stdout and stderr (file descriptors 1 and 2, so C++ and subprocess output too)
go to the run's log file, and only progress lines reach the terminal. The lines
come from LocalDagRunner's own lifecycle log records ("Component X is
running.", "A cached execution N is used.", "Component X is finished.").
"""

import contextlib
import logging
import os
import re
import sys
import time
from typing import Dict, List, Optional, TextIO

from absl import logging as absl_logging

_RUNNING = re.compile(r'Component (\S+) is running\.')
_CACHED = re.compile(r'A cached execution \d+ is used\.')
_FINISHED = re.compile(r'Component (\S+) is finished\.')


class ComponentProgress(logging.Handler):
  """Turns TFX lifecycle log records into one progress line per component."""

  def __init__(self, terminal: TextIO, total_components: int):
    super().__init__(level=logging.INFO)
    self._terminal = terminal
    self._total = total_components
    self._started = 0
    self._current: Optional[str] = None
    self._start_time = 0.0
    self._cached = False
    self.seconds: Dict[str, float] = {}
    self.cached: List[str] = []

  def emit(self, record: logging.LogRecord) -> None:
    message = record.getMessage()
    if match := _RUNNING.fullmatch(message):
      self._current, self._cached = match.group(1), False
      self._start_time = time.monotonic()
      self._started += 1
      self._write(f'[{self._started:2d}/{self._total}] {self._current:<20} ')
    elif _CACHED.fullmatch(message):
      self._cached = True
    elif (match := _FINISHED.fullmatch(message)) and self._current:
      seconds = round(time.monotonic() - self._start_time, 1)
      self.seconds[self._current] = seconds
      if self._cached:
        self.cached.append(self._current)
      self._write(f'{"cached" if self._cached else "ran":<7}{seconds:7.1f} s\n')
      self._current = None

  def fail_current(self) -> None:
    """Ends the line of the component that was running when the run failed."""
    if self._current:
      self.seconds[self._current] = round(time.monotonic() - self._start_time,
                                          1)
      self._write('FAILED\n')
      self._current = None

  def _write(self, text: str) -> None:
    self._terminal.write(text)
    self._terminal.flush()


@contextlib.contextmanager
def output_to_log_file(log_file: str):
  """Sends fds 1 and 2 to `log_file`; yields a stream to the real terminal."""
  os.makedirs(os.path.dirname(log_file), exist_ok=True)
  sys.stdout.flush()
  sys.stderr.flush()
  saved_stdout, saved_stderr = os.dup(1), os.dup(2)
  terminal = os.fdopen(os.dup(saved_stdout), 'w', buffering=1)
  with open(log_file, 'a', encoding='utf-8') as log:
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
      yield terminal
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os.dup2(saved_stdout, 1)
      os.dup2(saved_stderr, 2)
      os.close(saved_stdout)
      os.close(saved_stderr)
      terminal.close()


@contextlib.contextmanager
def component_progress(terminal: TextIO, total_components: int):
  """Installs a ComponentProgress on TFX's (absl's) logger for the block."""
  absl_logging.set_verbosity(absl_logging.INFO)
  progress = ComponentProgress(terminal, total_components)
  logger = logging.getLogger('absl')
  logger.addHandler(progress)
  try:
    yield progress
  finally:
    logger.removeHandler(progress)
