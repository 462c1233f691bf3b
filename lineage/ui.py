"""`repairml ui`: a read-only web UI over the ML Metadata store.

Pages, all server-rendered HTML with no JavaScript and nothing from a CDN:
  /                      the runs, newest first, and a form to diff two
  /runs/{run}            a run's component graph (status, seconds, cached)
                         and its steps with their artifacts
  /artifacts/{id}        an artifact's properties and its lineage, upstream
                         and downstream, `hops` executions deep
  /models/{model}        the provenance card (latest, a version, artifact:N
                         or a run id), with per-slice metric charts
  /why/{run}             why the run ended as it did
  /diff?a=RUN&b=RUN      what changed between two runs

It uses the serving web stack (Starlette on uvicorn), and the same readers
and dictionaries as the terminal commands. Every page opens the store
read-only for its request and writes nothing. Jinja2 escapes every value it
displays. It listens on 127.0.0.1 unless told otherwise, and answers only
requests whose Host is the address it listens on (no DNS rebinding).
"""

import os
import socket
import urllib.parse
from typing import Any, Dict, List, Tuple

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from lineage import blessing, card, diff, overview, text, why
from lineage.history import History, NotFound, Run
from pipeline.config import Config

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         'templates')
MAX_HOPS = 6
# No scripts, no frames, nothing from elsewhere: styles inline, images data:.
SECURITY_HEADERS = {
    'Content-Security-Policy': ("default-src 'none'; style-src 'unsafe-inline'; "
                                "img-src data:; form-action 'self'"),
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
}
STATE_COLOURS = {'complete': '#2e7d32', 'cached': '#607d8b',
                 'failed': '#c62828', 'running': '#f9a825'}


def quote(value: Any) -> str:
  return urllib.parse.quote(str(value), safe='')


def graph(run: Run) -> Dict[str, Any]:
  """A layered drawing of the run's steps: a step sits one layer right of
  the latest step whose output it read."""
  producer_of = {artifact: step.node_id for step in run.steps.values()
                 for ids in step.outputs.values() for artifact in ids}
  parents = {step.node_id: sorted({producer_of[a] for ids in
                                   step.inputs.values() for a in ids
                                   if a in producer_of} - {step.node_id})
             for step in run.steps.values()}
  layer: Dict[str, int] = {}

  def depth(node: str, seen: Tuple[str, ...] = ()) -> int:
    if node not in layer:
      layer[node] = 1 + max((depth(p, seen + (node,)) for p in parents[node]
                             if p not in seen), default=-1)
    return layer[node]
  for node in parents:
    depth(node)
  rows: Dict[int, int] = {}
  boxes = {}
  for node in run.steps:
    column = layer[node]
    boxes[node] = {'x': 10 + column * 190, 'y': 10 + rows.get(column, 0) * 66}
    rows[column] = rows.get(column, 0) + 1
  nodes = [{'id': node, **boxes[node], 'state': step.state,
            'seconds': step.seconds, 'colour': STATE_COLOURS.get(
                step.state, '#757575')} for node, step in run.steps.items()]
  edges = [{'x1': boxes[p]['x'] + 160, 'y1': boxes[p]['y'] + 25,
            'x2': boxes[n]['x'], 'y2': boxes[n]['y'] + 25}
           for n, ps in parents.items() for p in ps]
  return {'nodes': nodes, 'edges': edges,
          'width': 20 + (max(layer.values(), default=0) + 1) * 190,
          'height': 20 + max(rows.values(), default=1) * 66}


def slice_chart(evaluation: Dict[str, Any], limit: int = 24) -> List[Dict]:
  """Bars of the largest slices' macro F1, the model's and the baseline's,
  as fractions of the chart's width."""
  slices = sorted(evaluation.get('slices', []),
                  key=lambda s: -(s['examples'] or 0))[:limit]
  return [{'slice': s['slice'], 'examples': s['examples'],
           'macro_f1': s['macro_f1'], 'baseline': s['baseline_macro_f1'],
           'width': 300 * (s['macro_f1'] or 0),
           'baseline_width': 300 * (s['baseline_macro_f1'] or 0)}
          for s in slices]


def create_app(config: Config, allowed_hosts: List[str]) -> Starlette:
  """The UI over `config`'s store, answering only for `allowed_hosts`."""
  from pipeline import metadata_store  # pylint: disable=g-import-not-at-top
  templates = Jinja2Templates(env=jinja2.Environment(
      loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True))
  templates.env.filters['quote'] = quote
  templates.env.filters['number'] = text.number
  templates.env.filters['when'] = overview.iso_time

  def history() -> History:
    return History(metadata_store.open_store(config, read_only=True),
                   config.pipeline_name)

  def page(request: Request, template: str, status: int = 200,
           **values) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, template, {'pipeline': config.pipeline_name, **values},
        status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response

  def answering(handler):
    async def endpoint(request: Request):
      try:
        # The store and the artifacts are read off the event loop.
        template, status, values = await run_in_threadpool(handler, request)
        return page(request, template, status, **values)
      except NotFound as e:
        return page(request, 'error.html', 404, message=str(e))
      except metadata_store.StoreError as e:
        return page(request, 'error.html', 503, message=str(e))
      except _BadRequest as e:
        return page(request, 'error.html', 400, message=str(e))
    return endpoint

  def runs_page(request):
    found = history()
    return 'runs.html', 200, {'runs': overview.run_rows(found)}

  def run_page(request):
    found = history()
    run = found.run(request.path_params['run_id'])
    outputs = {step.node_id: found.artifacts(
        sorted(i for ids in step.outputs.values() for i in ids))
               for step in run.steps.values()}
    return 'run.html', 200, {'run': run, 'graph': graph(run),
                             'outputs': outputs}

  def artifact_page(request):
    found = history()
    artifact = found.artifact(_integer(request.path_params['artifact_id'],
                                       'artifact id'))
    if artifact is None:
      raise NotFound(f'no artifact {request.path_params["artifact_id"]} in '
                     'the store.')
    hops = _integer(request.query_params.get('hops', '3'), 'hops')
    if not 1 <= hops <= MAX_HOPS:
      raise _BadRequest(f'hops must be 1 to {MAX_HOPS}, got {hops}.')
    return 'artifact.html', 200, {'artifact': artifact, 'hops': hops,
                                  'lineage': found.lineage(artifact.id, hops)}

  def model_page(request):
    found = card.provenance_card(history(), config.paths.serving_dir,
                                 request.path_params['model'])
    return 'card.html', 200, {'card': found,
                              'chart': slice_chart(found['evaluation'])}

  def why_page(request):
    found = why.explain(history(), request.path_params['run_id'])
    return 'why.html', 200, {'why': found, 'FAIL': blessing.FAIL}

  def diff_page(request):
    a, b = request.query_params.get('a'), request.query_params.get('b')
    if not a or not b:
      raise _BadRequest('name two runs: /diff?a=RUN_A&b=RUN_B.')
    return 'diff.html', 200, {'diff': diff.diff_runs(history(), a, b)}

  async def not_found(request: Request, exc):
    return page(request, 'error.html', 404, message='no such page.')

  return Starlette(
      routes=[
          Route('/', answering(runs_page)),
          Route('/runs/{run_id:path}', answering(run_page)),
          Route('/artifacts/{artifact_id}', answering(artifact_page)),
          Route('/models/{model:path}', answering(model_page)),
          Route('/why/{run_id:path}', answering(why_page)),
          Route('/diff', answering(diff_page)),
      ],
      middleware=[Middleware(TrustedHostMiddleware,
                             allowed_hosts=allowed_hosts)],
      exception_handlers={404: not_found})


class _BadRequest(ValueError):
  """A page was asked for with a malformed parameter."""


def _integer(text: str, what: str) -> int:
  if not text.isdigit():
    raise _BadRequest(f'{what} must be a whole number, got {text!r}.')
  return int(text)


def hosts_for(host: str) -> List[str]:
  """The Host headers (their host part) a server listening on `host`
  answers."""
  if host in ('127.0.0.1', 'localhost', '::1'):
    return ['127.0.0.1', 'localhost', '[::1]']
  return [host]


def serve(config: Config, host: str, port: int, terminal) -> int:
  """Serves the UI until Ctrl-C; says where on `terminal`."""
  import uvicorn  # pylint: disable=g-import-not-at-top
  try:   # uvicorn would only log a port in use, and exit
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    with socket.socket(family) as probe:
      probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      probe.bind((host, port))
  except OSError as e:
    terminal.write(f'repairml ui: cannot listen on {host}:{port}: '
                   f'{e.strerror}. Pass --port with a free port.\n')
    return 2
  app = create_app(config, hosts_for(host))
  terminal.write(f'repairml ui: http://{host}:{port}/ over '
                 f'{config.pipeline_name}\'s store (log: '
                 f'{config.paths.log_file}; Ctrl-C stops)\n')
  uvicorn.run(app, host=host, port=port, log_level='warning',
              access_log=False)
  return 0
