-- The labour reference, whole: labour operation codes and their labels, small
-- master data. Columns as RAW_SCHEMAS (data/raw_sources.py).
SELECT
  l.labour_op_code,
  l.label,
  l.description
FROM `repairml_raw.labour_reference` AS l
