-- The part reference, whole: the job follows superseded_by chains through it,
-- and it is small master data. Columns as RAW_SCHEMAS (data/raw_sources.py).
SELECT
  p.part_number,
  p.label,
  p.superseded_by,
  p.description
FROM `repairml_raw.part_reference` AS p
