"""The `browser` fixture: headless Chromium shows a page that a local
Starlette app serves on 127.0.0.1, and save_screenshot keeps it as a PNG."""


import pytest
from selenium.webdriver.common.by import By
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

import chromium

_PAGE = """<!doctype html>
<html><head><title>repairml browser check</title></head>
<body>
  <h1 id="heading">Repair recommendations</h1>
  <p id="hidden" style="display: none">not shown</p>
  <script>
    document.getElementById('heading').insertAdjacentHTML(
        'afterend', '<p id="from-script">rendered by the page script</p>');
  </script>
</body></html>
"""


def _page(request):
  del request
  return HTMLResponse(_PAGE)


@pytest.fixture(scope='module')
def page_url():
  """The page's URL, served by uvicorn in a thread for this module."""
  with chromium.serving(Starlette(routes=[Route('/', _page)])) as url:
    yield url + '/'


def test_the_browser_shows_the_served_page_and_its_script_output(browser,
                                                                 page_url):
  browser.get(page_url)

  assert browser.title == 'repairml browser check'
  assert browser.find_element(By.ID, 'heading').text == (
      'Repair recommendations')
  assert browser.find_element(By.ID, 'from-script').text == (
      'rendered by the page script')
  hidden = browser.find_element(By.ID, 'hidden')
  assert not hidden.is_displayed() and hidden.text == ''
  assert browser.get_window_size() == {'width': 1400, 'height': 1000}


def test_save_screenshot_writes_a_png_of_the_page(browser, page_url):
  browser.get(page_url)
  path = chromium.SCREENSHOTS / 'browser-check.png'
  path.unlink(missing_ok=True)

  saved = chromium.save_screenshot(browser, 'browser-check')

  assert saved == path
  assert saved.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert saved.stat().st_size > 1000


def test_a_screenshot_name_must_be_a_plain_file_name(browser):
  with pytest.raises(ValueError, match='file name'):
    chromium.save_screenshot(browser, '../outside')
