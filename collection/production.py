"""The data collection as a KFP v2 pipeline for Vertex AI Pipelines: `repairml-collection`.

`repairml compile --pipeline collection` writes it (create_pipeline, compiled
offline by compile_pipeline); `repairml submit --pipeline collection
[--schedule CRON]` runs or schedules it. Its runtime parameters are date_from,
date_to and car_model ('' = the collection.window_days days up to yesterday,
every car model). The steps of collection/__init__.py and a last one for the
data-quality statistics, each after the one before:
  0. resolve-dates (component image, pipeline_steps.py): the run's days, the
     BigQuery query parameters and the job's arguments;
  1. selection (BigqueryQueryJobOp): selection.bigquery_statements, EXPORT DATA
     of each raw table to STAGING/selection/TABLE.parquet/;
  2. the collection job (DataprocPySparkBatchOp): collection/job.py on
     Dataproc Serverless, writing STAGING/job/;
  3. the exploration table (component image, exploration.py): one
     WRITE_TRUNCATE load job per day partition. A component rather than a
     LOAD DATA statement: the number of days is known only at run time, and a
     day without sessions must have its partition deleted, not loaded;
  4. publish (component image): `python -m collection.spans publish`;
  5. data-quality statistics (component image): `python -m
     collection.bigquery_stats publish` reads the run's days of the
     exploration table and the manifest and loads the report's statistics
     into vertex.collection.statistics_dataset (bigquery_stats.py).
Every step runs again on every run (no caching): the same days collected a
day later hold the claims that arrived since.
"""
# No `from __future__ import annotations` here, unlike the rest of collection/: KFP reads the
# component functions' annotations (dsl.OutputPath(str)) as objects when it builds the components.
import json
import os
import tempfile
from typing import Any, Dict, Optional

import yaml

from collection import selection

__all__ = ["PIPELINE_NAME", "DEFAULT_OUTPUT", "TASKS", "job_dir", "statistics_dataset", "create_pipeline",
           "pipeline_job_json", "compile_pipeline", "check_production_config", "checked_values"]

PIPELINE_NAME = "repairml-collection"
DEFAULT_OUTPUT = "runs/collection_pipeline.json"
# The tasks of the compiled pipeline, in order.
TASKS = ("resolve-dates", "bigquery-query-job", "dataproc-create-pyspark-batch", "load-exploration-table",
         "publish-spans", "data-quality-statistics")


def job_dir(staging_uri: str) -> str:
    return f"{staging_uri.rstrip('/')}/job"


def statistics_dataset(config) -> str:
    """The statistics tables' dataset: vertex.collection.statistics_dataset, or the exploration table's."""
    return config.vertex.collection.statistics_dataset or config.collection.exploration_table.rsplit(".", 1)[0]


def _selection_dir(staging_uri: str) -> str:
    return f"{staging_uri.rstrip('/')}/selection"


def check_production_config(config) -> None:
    """ConfigError unless the configuration can compile the collection pipeline."""
    from pipeline import bigquery_values
    from pipeline.config import ConfigError

    where = config.source_path
    if config.vertex is None or config.vertex.collection is None:
        raise ConfigError(f"{where}: vertex.collection: the collection pipeline needs this section (raw_dataset, "
                          "bigquery_location, staging_uri, job_main_uri, job_package_uri); see configs/vertex.yaml")
    if not config.collection.spans.startswith("gs://"):
        raise ConfigError(f"{where}: collection.spans: on Vertex AI this must be a gs:// URI, "
                          f"got {config.collection.spans!r}")
    try:
        bigquery_values.check_table(config.collection.exploration_table)
    except bigquery_values.QueryError as error:
        raise ConfigError(f"{where}: collection.exploration_table: on Vertex AI the BigQuery table "
                          f"(data.table): {error.problem}") from None
    try:
        selection.bigquery_statements(config.vertex.collection.raw_dataset, config.vertex.collection.staging_uri)
    except selection.SelectionError as error:
        raise ConfigError(f"{where}: {error}") from None


def checked_values(car_model: Optional[str] = None, date_from: Optional[str] = None,
                   date_to: Optional[str] = None) -> Dict[str, str]:
    """The runtime parameters given to `repairml submit --pipeline collection`, checked; None = not given."""
    from collection.dates import DateError, parse_date
    from pipeline import bigquery_values
    from pipeline.config import ConfigError

    values = {name: value for name, value in
              (("date_from", date_from), ("date_to", date_to), ("car_model", car_model)) if value is not None}
    try:
        for name in ("date_from", "date_to"):
            if values.get(name):
                values[name] = parse_date(f"--{name.replace('_', '-')}", values[name]).isoformat()
        if values.get("date_from") and values.get("date_to") and values["date_from"] > values["date_to"]:
            raise DateError(f"--date-from {values['date_from']} is after --date-to {values['date_to']}; "
                            "give a range whose first day comes first")
        bigquery_values.checked_filter(bigquery_values.SessionFilter(car_model=values.get("car_model", "")))
    except DateError as error:
        raise ConfigError(str(error)) from None
    except bigquery_values.QueryError as error:
        raise ConfigError(f"--car-model: {error.problem}") from None
    return values


def create_pipeline(config, image: str):
    """The pipeline function of `config` (a production configuration), its steps in `image`."""
    from google_cloud_pipeline_components.v1.bigquery import BigqueryQueryJobOp
    from google_cloud_pipeline_components.v1.dataproc import DataprocPySparkBatchOp
    from kfp import dsl

    check_production_config(config)
    vertex, settings = config.vertex, config.collection
    production = vertex.collection
    staging = production.staging_uri
    rules_json = settings.collection_rules.to_json()
    script = selection.bigquery_statements(production.raw_dataset, staging)

    @dsl.container_component
    def resolve_dates(date_from: str, date_to: str, car_model: str, out_date_from: dsl.OutputPath(str),
                      out_date_to: dsl.OutputPath(str), query_parameters: dsl.OutputPath(list),
                      job_args: dsl.OutputPath(list)):
        return dsl.ContainerSpec(image=image, command=[
            "python", "-m", "collection.pipeline_steps", "resolve-dates",
            "--date-from", date_from, "--date-to", date_to, "--car-model", car_model,
            "--window-days", str(settings.window_days), "--span-epoch", settings.span_epoch,
            "--rules-json", rules_json, "--raw-dataset", production.raw_dataset,
            "--selection-uri", _selection_dir(staging), "--job-dir", job_dir(staging),
            "--project", vertex.project, "--location", production.bigquery_location,
            "--out-date-from", out_date_from, "--out-date-to", out_date_to,
            "--out-query-parameters", query_parameters, "--out-job-args", job_args])

    @dsl.container_component
    def load_exploration_table(date_from: str, date_to: str):
        return dsl.ContainerSpec(image=image, command=[
            "python", "-m", "collection.exploration", "load-bigquery",
            "--table", settings.exploration_table, "--exploration-uri", f"{job_dir(staging)}/exploration",
            "--date-from", date_from, "--date-to", date_to, "--span-epoch", settings.span_epoch,
            "--project", vertex.project, "--location", production.bigquery_location])

    @dsl.container_component
    def publish_spans():
        return dsl.ContainerSpec(image=image, command=[
            "python", "-m", "collection.spans", "publish", "--job-dir", job_dir(staging),
            "--spans", settings.spans])

    @dsl.container_component
    def data_quality_statistics(date_from: str, date_to: str):
        return dsl.ContainerSpec(image=image, command=[
            "python", "-m", "collection.bigquery_stats", "publish",
            "--table", settings.exploration_table, "--spans", settings.spans,
            "--dataset", statistics_dataset(config), "--date-from", date_from, "--date-to", date_to,
            "--vocabulary-json", json.dumps(list(config.label.vocabulary)), "--label-column", config.label.column,
            "--project", vertex.project, "--location", production.bigquery_location])

    @dsl.pipeline(name=PIPELINE_NAME, pipeline_root=f"{config.paths.pipeline_root.rstrip('/')}/collection",
                  description="repairml data collection: raw diagnostics and warranty claims -> daily spans")
    def collection_pipeline(date_from: str = settings.date_from, date_to: str = settings.date_to,
                            car_model: str = settings.car_model):
        dates = resolve_dates(date_from=date_from, date_to=date_to, car_model=car_model)
        dates.set_display_name("resolve the dates")
        select = BigqueryQueryJobOp(
            query=script, query_parameters=dates.outputs["query_parameters"],
            # The script's parameters are @named ones.
            job_configuration_query={"parameterMode": "NAMED"},
            location=production.bigquery_location, project=vertex.project,
            labels={"repairml-step": "collection-selection"}).after(dates)
        select.set_display_name("selection (BigQuery)")
        job = DataprocPySparkBatchOp(
            project=vertex.project, location=vertex.region,
            main_python_file_uri=production.job_main_uri, python_file_uris=[production.job_package_uri],
            runtime_config_version=production.dataproc_runtime_version,
            args=dates.outputs["job_args"],
            service_account=production.service_account or vertex.service_account,
            subnetwork_uri=production.subnetwork_uri,
            labels={"repairml-step": "collection-job"}).after(select)
        job.set_display_name("join and clean (Dataproc Serverless)")
        load = load_exploration_table(date_from=dates.outputs["out_date_from"],
                                      date_to=dates.outputs["out_date_to"]).after(job)
        load.set_display_name("exploration table (BigQuery)")
        publish = publish_spans().after(load)
        publish.set_display_name("publish the spans")
        statistics = data_quality_statistics(date_from=dates.outputs["out_date_from"],
                                             date_to=dates.outputs["out_date_to"]).after(publish)
        statistics.set_display_name("data-quality statistics (BigQuery)")
        for task in (dates, select, job, load, publish, statistics):
            task.set_caching_options(False)

    return collection_pipeline


def pipeline_job_json(config, image: str) -> Dict[str, Any]:
    """The compiled pipeline job, in the shape `repairml submit` sends (as KubeflowV2DagRunner writes it)."""
    from kfp import compiler

    pipeline = create_pipeline(config, image)
    with tempfile.TemporaryDirectory() as scratch:
        package = os.path.join(scratch, "pipeline.yaml")
        compiler.Compiler().compile(pipeline, package_path=package)
        with open(package, encoding="utf-8") as f:
            spec = yaml.safe_load(f)
    settings = config.collection
    return {
        "displayName": PIPELINE_NAME,
        "labels": {},
        "pipelineSpec": spec,
        "runtimeConfig": {
            "gcsOutputDirectory": spec.get("defaultPipelineRoot", ""),
            "parameterValues": {"date_from": settings.date_from, "date_to": settings.date_to,
                                "car_model": settings.car_model},
        },
    }


def compile_pipeline(config, output: str, tag: str) -> str:
    """Writes the collection pipeline job JSON for `config` to `output`; returns the image."""
    import json

    image = f"{config.vertex.image}:{tag}"
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    job = pipeline_job_json(config, image)
    temporary = f"{output}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(job, f, indent=2, sort_keys=True)
    os.replace(temporary, output)
    return image
