"""The report's inline SVG charts: well-formed XML, escaped text, labelled axes, bars to scale."""

import re
import xml.etree.ElementTree as ElementTree

import pytest

from collection import charts
from collection.charts import Bar


def _rects(svg: str):
  return ElementTree.fromstring(svg).findall(".//rect[@class='bar']")


def _texts(svg: str):
  return [t.text for t in ElementTree.fromstring(svg).iter('text')]


def test_bar_lengths_are_proportional_to_the_values():
  svg = charts.bar_chart([Bar('a', 10), Bar('b', 40), Bar('c', 0)], title='t', value_label='sessions')

  widths = [float(r.get('width')) for r in _rects(svg)]
  assert widths[1] == pytest.approx(4 * widths[0])
  assert widths[2] == 0
  assert 'sessions' in _texts(svg)  # the value axis is labelled


def test_text_from_the_data_is_escaped_and_the_chart_stays_xml():
  label = '<script>alert("x")</script> & co'
  svg = charts.bar_chart([Bar(label, 3, flag='never <seen>')], title='a < b', value_label='n & m')

  root = ElementTree.fromstring(svg)
  assert '<script>' not in svg
  assert label in _texts(svg)  # the parser gives the text back as it was
  assert root.find('title').text == 'a < b'
  assert 'n & m' in _texts(svg)
  assert '3 (never <seen>)' in _texts(svg)


def test_a_flagged_bar_is_drawn_in_another_colour():
  svg = charts.bar_chart([Bar('ok', 2), Bar('odd', 1, flag='not in the vocabulary')], title='t',
                         value_label='v')

  plain, flagged = _rects(svg)
  assert plain.get('fill') != flagged.get('fill')


def test_columns_scale_to_y_max_and_keep_the_categories_order():
  svg = charts.column_chart(['2026-01-02', '2026-01-01'], [0.5, 0.25], title='coverage',
                            x_label='session date', y_label='share', y_max=1.0)

  heights = [float(r.get('height')) for r in _rects(svg)]
  assert heights[0] == pytest.approx(2 * heights[1])
  assert heights[0] == pytest.approx(160 / 2)  # half of the plot's height: y runs to 1.0
  texts = _texts(svg)
  assert texts.index('2026-01-02') < texts.index('2026-01-01')
  assert {'session date', 'share'} <= set(texts)


def test_column_chart_needs_a_value_per_category():
  with pytest.raises(ValueError, match='2 categories but 1 values'):
    charts.column_chart(['a', 'b'], [1], title='t', x_label='x', y_label='y')


def test_histogram_columns_span_their_bins_and_markers_are_labelled():
  svg = charts.histogram([0, 10, 20, 40], [5, 10, 0], title='delay', x_label='days',
                         markers={'median': 10, '95th percentile': 38})

  rects = _rects(svg)
  assert len(rects) == 3
  x = [float(r.get('x')) for r in rects]
  assert x[1] - x[0] == pytest.approx((x[2] - x[1]) / 1)  # bins of 10 are equally wide
  assert float(rects[1].get('height')) == pytest.approx(2 * float(rects[0].get('height')))
  texts = _texts(svg)
  assert 'median: 10' in texts and '95th percentile: 38' in texts
  assert {'days', 'sessions'} <= set(texts)
  markers = ElementTree.fromstring(svg).findall(".//line[@class='marker']")
  assert float(markers[0].get('x1')) == pytest.approx(x[1])  # the median line sits at 10


def test_histogram_needs_one_edge_more_than_counts():
  with pytest.raises(ValueError, match='3 counts need 4 bin edges'):
    charts.histogram([0, 1, 2], [1, 2, 3], title='t', x_label='x')


def test_an_empty_chart_is_still_valid_svg():
  for svg in (charts.bar_chart([], title='t', value_label='v'),
              charts.column_chart([], [], title='t', x_label='x', y_label='y'),
              charts.histogram([], [], title='t', x_label='x')):
    assert ElementTree.fromstring(svg).tag == 'svg'


def test_charts_carry_no_url():
  svg = charts.histogram([0, 1], [1], title='t', x_label='x', markers={'m': 0.5})

  assert not re.search(r'https?://', svg)


@pytest.mark.parametrize('low, high, expected', [
    (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0, 47, [0, 10, 20, 30, 40, 50]),
    (0, 795, [0, 200, 400, 600, 800]),
    (0, 0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
])
def test_ticks_are_round_and_cover_the_range(low, high, expected):
  assert charts.nice_ticks(low, high, 5) == pytest.approx(expected)
