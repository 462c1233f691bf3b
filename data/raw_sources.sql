-- The raw diagnostics and warranty sources as BigQuery tables.
--
-- The same five tables data/raw_sources.py writes locally as parquet and SQLite
-- (RAW_SCHEMAS there; tests/data/test_raw_sources.py checks that both agree,
-- column by column). The dataset `repairml_raw` is a placeholder: create the
-- tables in your project's dataset. Parquet list columns load as ARRAY<STRING>
-- with `bq load --source_format=PARQUET --parquet_enable_list_inference`; an
-- array has no NOT NULL (BigQuery stores it as a REPEATED field, where the
-- empty array stands for none), though the files never hold a NULL list.
-- Timestamps are UTC. The join rules that turn these tables into the training
-- table are in data/raw_sources.py's docstring.

CREATE TABLE IF NOT EXISTS `repairml_raw.diagnostic_sessions` (
  session_id STRING NOT NULL OPTIONS(description = "Upload id; a re-upload of the same session gets a new one"),
  vin STRING NOT NULL OPTIONS(description = "Vehicle identification number, 17 characters"),
  workshop_id STRING NOT NULL OPTIONS(description = "The workshop that ran the session"),
  country STRING NOT NULL OPTIONS(description = "The workshop's country, ISO 3166 alpha-2"),
  session_ts TIMESTAMP NOT NULL OPTIONS(description = "When the session was uploaded"),
  car_model STRING NOT NULL OPTIONS(description = "Car model"),
  engine_type STRING NOT NULL OPTIONS(description = "petrol, diesel, hybrid or ev"),
  build_year INT64 NOT NULL OPTIONS(description = "Model year"),
  mileage_km INT64 NOT NULL OPTIONS(description = "Odometer, km"),
  battery_voltage FLOAT64 OPTIONS(description = "12 V net voltage, V; NULL when not recorded"),
  coolant_temp FLOAT64 OPTIONS(description = "Coolant temperature in coolant_temp_unit; NULL when not recorded"),
  coolant_temp_unit STRING NOT NULL OPTIONS(description = "'degC', or 'degF' from some US testers"),
  fuel_trim_pct FLOAT64 OPTIONS(description = "Long-term fuel trim, %; NULL when not recorded"),
  symptoms ARRAY<STRING> OPTIONS(description = "Symptoms the customer reported")
)
PARTITION BY DATE(session_ts)
OPTIONS(description = "One row per uploaded diagnostic session; a session may be uploaded more than once");

CREATE TABLE IF NOT EXISTS `repairml_raw.diagnostic_dtcs` (
  session_id STRING NOT NULL OPTIONS(description = "The upload the readout belongs to"),
  control_unit STRING NOT NULL OPTIONS(description = "The control unit that reported the code: ECM, HCU, ABS, BCM or GW"),
  code STRING NOT NULL OPTIONS(description = "The code as the tester spelled it: case and surrounding spaces vary")
)
OPTIONS(description = "One row per diagnostic trouble code read out in an upload");

CREATE TABLE IF NOT EXISTS `repairml_raw.warranty_claims` (
  claim_id STRING NOT NULL OPTIONS(description = "Claim id; a resubmission gets a new one"),
  vin STRING NOT NULL OPTIONS(description = "Vehicle identification number"),
  workshop_id STRING NOT NULL OPTIONS(description = "The workshop that filed the claim"),
  repair_date DATE NOT NULL OPTIONS(description = "The day of the repair"),
  status STRING NOT NULL OPTIONS(description = "'submitted' or 'cancelled'"),
  part_numbers ARRAY<STRING> OPTIONS(description = "Part numbers replaced, possibly superseded ones"),
  labour_op_codes ARRAY<STRING> OPTIONS(description = "Labour operation codes performed"),
  submitted_ts TIMESTAMP NOT NULL OPTIONS(description = "When the claim was submitted")
)
PARTITION BY repair_date
OPTIONS(description = "Warranty claims; resubmitted, cancelled and orphan claims included");

CREATE TABLE IF NOT EXISTS `repairml_raw.part_reference` (
  part_number STRING NOT NULL OPTIONS(description = "Part number"),
  label STRING OPTIONS(description = "Repair label, e.g. part:battery_12v; NULL for a superseded number"),
  superseded_by STRING OPTIONS(description = "The number that replaced this one; NULL for a current number"),
  description STRING NOT NULL OPTIONS(description = "Part description")
)
OPTIONS(description = "Part numbers and their repair labels; follow superseded_by to the current number");

CREATE TABLE IF NOT EXISTS `repairml_raw.labour_reference` (
  labour_op_code STRING NOT NULL OPTIONS(description = "Labour operation code"),
  label STRING NOT NULL OPTIONS(description = "Repair label, e.g. op:replace_12v_battery"),
  description STRING NOT NULL OPTIONS(description = "Operation description")
)
OPTIONS(description = "Labour operation codes and their repair labels");
