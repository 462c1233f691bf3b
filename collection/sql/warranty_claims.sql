-- The claims that may belong to the range's sessions: repair dates from
-- @min_claim_delay_days after @date_from to @max_claim_delay_days after
-- @date_to, both ends inclusive, every status (the job drops cancelled ones
-- and counts them). With a car model, only the claims on the VINs of the
-- selected uploads (diagnostic_sessions.sql): claims carry no car model. Columns
-- as RAW_SCHEMAS (data/raw_sources.py). Parameters: @date_from, @date_to
-- (DATE), @car_model (STRING), @min_claim_delay_days, @max_claim_delay_days
-- (INT64).
SELECT
  c.claim_id,
  c.vin,
  c.workshop_id,
  c.repair_date,
  c.status,
  c.part_numbers,
  c.labour_op_codes,
  c.submitted_ts
FROM `repairml_raw.warranty_claims` AS c
WHERE c.repair_date BETWEEN DATE_ADD(@date_from, INTERVAL @min_claim_delay_days DAY)
    AND DATE_ADD(@date_to, INTERVAL @max_claim_delay_days DAY)
  AND (@car_model = '' OR c.vin IN (
    SELECT s.vin
    FROM `repairml_raw.diagnostic_sessions` AS s
    WHERE DATE(s.session_ts) BETWEEN @date_from
        AND DATE_ADD(@date_to, INTERVAL @max_claim_delay_days DAY)
      AND s.car_model = @car_model
  ))
