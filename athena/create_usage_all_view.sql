-- Every usage record once: days compacted to Parquet from usage_compacted, the other days from the raw JSONL.
-- A day's raw objects stay until lifecycle expires them (after compaction verified and tagged them), so
-- the raw side skips every day the compacted table holds. The named queries read this view.
CREATE OR REPLACE VIEW "${database}"."${all}" AS
SELECT * FROM "${database}"."${compacted}"
UNION ALL
SELECT * FROM "${database}"."${table}"
WHERE dt NOT IN (SELECT DISTINCT dt FROM "${database}"."${compacted}")
