"""The production collection pipeline's resolve-dates step: the days of a run, and what the later steps get.

The compiled command is run in tests/production/test_collection_pipeline.py;
here, the open-bound case that asks BigQuery for the uploads' first or last
date, at the HTTP boundary (a real client, a recording fake session).
"""
from __future__ import annotations

import datetime
import json
import urllib.parse

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from collection import pipeline_steps, selection
from collection.dates import DateError, DateRange
from collection.rules import CollectionRules

D = datetime.date
RULES = CollectionRules()
TODAY = D(2026, 3, 20)


def _resolve(date_from="", date_to="", car_model="", window_days=45, source_range=None):
    return pipeline_steps.resolved_outputs(date_from, date_to, car_model, window_days, "2026-01-01", RULES,
                                           "gs://b-staging/selection", "gs://b-staging/job", TODAY, source_range)


def _never():
    raise AssertionError("the source range was asked for although the range is known")


def test_explicit_dates_win_and_the_source_is_not_asked():
    outputs = _resolve("2026-03-01", "2026-03-03", source_range=_never)
    assert (outputs["date_from"], outputs["date_to"]) == ("2026-03-01", "2026-03-03")
    assert outputs["job_args"][outputs["job_args"].index("--date-to") + 1] == "2026-03-03"


def test_without_dates_the_window_ends_yesterday():
    outputs = _resolve(window_days=7, source_range=_never)
    assert (outputs["date_from"], outputs["date_to"]) == ("2026-03-13", "2026-03-19")


def test_one_bound_with_window_0_takes_the_other_from_the_source():
    outputs = _resolve(date_from="2026-02-01", window_days=0,
                       source_range=lambda: DateRange(D(2026, 1, 1), D(2026, 2, 28)))
    assert (outputs["date_from"], outputs["date_to"]) == ("2026-02-01", "2026-02-28")


def test_an_empty_source_is_an_error_not_an_empty_run():
    with pytest.raises(DateError, match="nothing to collect"):
        _resolve(window_days=0, source_range=lambda: None)


def test_a_car_model_that_the_modeling_source_would_refuse_is_refused():
    with pytest.raises(DateError, match="car_model"):
        _resolve("2026-03-01", "2026-03-03", car_model="x'; DROP")


class QueryHttp(requests.Session):
    """BigQuery's answers to one query job: insert, then the results."""

    def __init__(self, first: str | None, last: str | None):
        super().__init__()
        self.is_mtls = False
        self.sent = []
        self.row = {"f": [{"v": first}, {"v": last}]}

    def request(self, method, url, data=None, headers=None, timeout=None, **unused):
        body = json.loads(data) if data else None
        path = urllib.parse.urlparse(url).path
        self.sent.append((method, path, body))
        if method == "POST" and path.endswith("/jobs"):
            self.job = dict(body, status={"state": "DONE"})
            return self._answer(self.job)
        if "/queries/" in path:
            return self._answer({
                "kind": "bigquery#getQueryResultsResponse", "jobComplete": True, "totalRows": "1",
                "jobReference": self.job["jobReference"],
                "schema": {"fields": [{"name": "first_day", "type": "DATE"}, {"name": "last_day", "type": "DATE"}]},
                "rows": [self.row]})
        if "/jobs/" in path:
            return self._answer(self.job)
        raise AssertionError(f"unexpected request {method} {url}")

    @staticmethod
    def _answer(payload):
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        return response


def _client(http):
    return bigquery.Client(project="my-gcp-project", credentials=AnonymousCredentials(), _http=http)


def test_the_source_range_query_is_sent_to_bigquery_and_read_back():
    http = QueryHttp("2026-01-01", "2026-03-18")
    assert pipeline_steps.bigquery_source_range("my-gcp-project.repairml_raw", _client(http)) == (
        DateRange(D(2026, 1, 1), D(2026, 3, 18)))
    [insert] = [body for method, path, body in http.sent if method == "POST"]
    query = insert["configuration"]["query"]
    assert query["query"] == selection.bigquery_source_range_sql("my-gcp-project.repairml_raw")
    assert query["useLegacySql"] is False


def test_an_empty_uploads_table_has_no_source_range():
    assert pipeline_steps.bigquery_source_range("my-gcp-project.repairml_raw",
                                                _client(QueryHttp(None, None))) is None
