"""The online server's Prometheus metrics, served at GET /metrics.

Each server has a registry of its own (tests run several in one process).
Route labels are the route's name, never the raw path, so that a client
cannot grow the number of series.

  repairml_serving_requests_total{route, code}     requests answered
  repairml_serving_request_seconds{route}          latency, arrival to answer
  repairml_serving_batch_sessions                  sessions per model call
  repairml_serving_queue_sessions                  sessions waiting for one
  repairml_serving_shed_requests_total{reason}     429/503 answers: queue_full,
                                                   deadline, connections
  repairml_serving_model_version                   the version served by default
  repairml_serving_model_load_failures_total       versions that failed to load
  repairml_serving_request_log_dropped_total       log lines not written
"""

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter,
                               Gauge, Histogram, generate_latest)

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
                   2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServingMetrics:
  """The metrics of one server."""

  content_type = CONTENT_TYPE_LATEST

  def __init__(self):
    self.registry = CollectorRegistry()
    self.requests = Counter(
        'repairml_serving_requests', 'Requests answered, by route and HTTP '
        'status code.', ['route', 'code'], registry=self.registry)
    self.latency = Histogram(
        'repairml_serving_request_seconds', 'Seconds from a request\'s '
        'arrival to its answer, by route.', ['route'],
        buckets=LATENCY_BUCKETS, registry=self.registry)
    self.batch_sessions = Histogram(
        'repairml_serving_batch_sessions', 'Sessions per model call.',
        buckets=BATCH_BUCKETS, registry=self.registry)
    self.queue_sessions = Gauge(
        'repairml_serving_queue_sessions', 'Sessions waiting for a model '
        'call.', registry=self.registry)
    self.shed = Counter(
        'repairml_serving_shed_requests', 'Requests refused at once with 429 '
        'or 503 because the server was at capacity, by reason.', ['reason'],
        registry=self.registry)
    self.model_version = Gauge(
        'repairml_serving_model_version', 'The model version served by '
        'default (0: none yet).', registry=self.registry)
    self.load_failures = Counter(
        'repairml_serving_model_load_failures', 'Model versions that failed '
        'to load or to warm up.', registry=self.registry)
    self.request_log_dropped = Counter(
        'repairml_serving_request_log_dropped', 'Request log lines dropped '
        '(the writer fell behind, or a line could not be encoded).',
        registry=self.registry)

  def observe(self, route: str, code: int, seconds: float) -> None:
    self.requests.labels(route, str(code)).inc()
    self.latency.labels(route).observe(seconds)

  def exposition(self) -> bytes:
    return generate_latest(self.registry)
