"""Headless Chromium for the tests of repairml's web pages.

start_browser() drives Debian's chromium through its chromedriver with
selenium (no browser or driver is downloaded: both come from `make
test-services`). save_screenshot() keeps what a page looked like in
test-artifacts/screenshots/, for a person to look at after the run.
serving() puts the pages to test on a local port.
"""

import contextlib
import os
import re
import threading
import time
from pathlib import Path
from typing import Iterator

import uvicorn

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = PROJECT_ROOT / 'test-artifacts' / 'screenshots'
CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
_OPTIONS = ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage',
            '--window-size=1400,1000')
_PAGE_LOAD_SECONDS = 30
_SERVER_START_SECONDS = 30


class BrowserError(RuntimeError):
  """Chromium cannot be started; the message says what to do."""


def start_browser() -> webdriver.Chrome:
  """A headless Chromium, 1400x1000; the caller quits it."""
  for path, package in ((CHROMIUM, 'chromium'),
                        (CHROMEDRIVER, 'chromium-driver')):
    if not os.access(path, os.X_OK):
      raise BrowserError(
          f'{path} is not installed, and the browser tests drive it. Run '
          f'`make test-services` (it installs Debian\'s {package}), then the '
          'tests again.')
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for option in _OPTIONS:
    options.add_argument(option)
  driver = webdriver.Chrome(options=options,
                            service=Service(executable_path=CHROMEDRIVER))
  driver.set_page_load_timeout(_PAGE_LOAD_SECONDS)
  return driver


def save_screenshot(browser: webdriver.Chrome, name: str) -> Path:
  """Saves the browser's current page as test-artifacts/screenshots/
  NAME.png and returns the path."""
  if not re.fullmatch(r'[A-Za-z0-9_.-]+', name):
    raise ValueError(f'a screenshot name is a file name of letters, digits, '
                     f'dots, dashes and underscores, got {name!r}.')
  SCREENSHOTS.mkdir(parents=True, exist_ok=True)
  path = SCREENSHOTS / (name if name.endswith('.png') else f'{name}.png')
  if not browser.save_screenshot(str(path)):
    raise BrowserError(f'chromium could not save a screenshot to {path}.')
  return path


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
  """Serves the ASGI `app` with uvicorn in a thread, on a free port of
  127.0.0.1; yields its base URL (without a trailing slash)."""
  server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=0,
                                         log_level='warning'))
  thread = threading.Thread(target=server.run, daemon=True)
  thread.start()
  deadline = time.monotonic() + _SERVER_START_SECONDS
  while not server.started:
    if not thread.is_alive() or time.monotonic() > deadline:
      raise BrowserError('uvicorn did not start serving the page.')
    time.sleep(0.02)
  port = server.servers[0].sockets[0].getsockname()[1]
  try:
    yield f'http://127.0.0.1:{port}'
  finally:
    server.should_exit = True
    thread.join(timeout=10)
