-- The uploads a collection run reads: those of the range's car model (every
-- car model when @car_model is '') whose session date lies from @date_from to
-- @max_claim_delay_days days after @date_to, both ends inclusive. The uploads
-- after @date_to are not collected: they compete with the range's sessions for
-- the range's claims (a claim belongs to the latest earlier session of its
-- car), and the job emits only the days of the range. Columns as RAW_SCHEMAS
-- (data/raw_sources.py). Parameters: @date_from, @date_to (DATE), @car_model
-- (STRING), @max_claim_delay_days (INT64).
SELECT
  s.session_id,
  s.vin,
  s.workshop_id,
  s.country,
  s.session_ts,
  s.car_model,
  s.engine_type,
  s.build_year,
  s.mileage_km,
  s.battery_voltage,
  s.coolant_temp,
  s.coolant_temp_unit,
  s.fuel_trim_pct,
  s.symptoms
FROM `repairml_raw.diagnostic_sessions` AS s
WHERE DATE(s.session_ts) BETWEEN @date_from
    AND DATE_ADD(@date_to, INTERVAL @max_claim_delay_days DAY)
  AND (@car_model = '' OR s.car_model = @car_model)
