-- The DTC readouts of the selected uploads (diagnostic_sessions.sql, the same
-- window and car model), so that a re-upload's readouts are there for the job
-- to drop with it. Columns as RAW_SCHEMAS (data/raw_sources.py). Parameters:
-- @date_from, @date_to (DATE), @car_model (STRING), @max_claim_delay_days
-- (INT64).
SELECT
  d.session_id,
  d.control_unit,
  d.code
FROM `repairml_raw.diagnostic_dtcs` AS d
WHERE d.session_id IN (
  SELECT s.session_id
  FROM `repairml_raw.diagnostic_sessions` AS s
  WHERE DATE(s.session_ts) BETWEEN @date_from
      AND DATE_ADD(@date_to, INTERVAL @max_claim_delay_days DAY)
    AND (@car_model = '' OR s.car_model = @car_model)
)
