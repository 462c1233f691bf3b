"""Headless Chromium for the tests of repairml's web pages.

start_browser() drives Debian's chromium through its chromedriver with
selenium (no browser or driver is downloaded: both come from `make
test-services`). save_screenshot() keeps what a page looked like in
test-artifacts/screenshots/, for a person to look at after the run.
"""

import os
import re
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = PROJECT_ROOT / 'test-artifacts' / 'screenshots'
CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
_OPTIONS = ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage',
            '--window-size=1400,1000')
_PAGE_LOAD_SECONDS = 30


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
