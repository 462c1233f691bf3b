"""The data collection pipeline: raw diagnostics and warranty sources -> daily parquet spans.

The first of repairml's two pipelines, and the only source of the spans the
modeling pipeline trains on. One run collects a range of session dates, in four
steps; locally `repairml collect` runs them in turn, in production they are the
steps of the KFP pipeline that `repairml compile --pipeline collection` writes:

  1. selection (selection.py, sql/): BigQuery SQL picks the raw rows of the date
     range and car model. Locally the same SQL text, transpiled by sqlglot, runs
     on DuckDB over the raw parquet files. It writes STAGING/selection/TABLE.parquet
     for the five raw tables, with the raw tables' columns (data/raw_sources.py,
     RAW_SCHEMAS). Uploads are selected up to max_claim_delay_days after the
     range, as competitors for the range's claims (a claim belongs to the latest
     earlier session of its car), and claims up to max_claim_delay_days after it.
  2. the join and clean (job.py): a PySpark 3.5 job, free of TFX, in its own
     Python 3.12 environment (requirements.lock here; Dataproc Serverless 2.2 in
     production, `local[*]` here). It applies the rules (rules.py) and writes
     STAGING/job/: sessions/_span=K/ (one parquet file per span, the modeling
     table's columns), exploration/_span=K/ (the same sessions with their join
     columns) and rule_counts.json.
  3. the exploration table (exploration.py): the day's rows replace that day's
     rows of a DuckDB table locally, of a BigQuery partition in production.
  4. publishing (spans.py): each span file replaces SPANS/span-K/sessions.parquet
     whole, and SPANS/manifest.json records each span's rows, content
     fingerprint, source watermarks and rule counts.
A run that fails before step 4 leaves every published span as it was. In
production a last step loads the data-quality report's statistics of the run's
days into BigQuery tables (bigquery_stats.py); locally `repairml data report`
shows them as HTML (report.py).
"""
