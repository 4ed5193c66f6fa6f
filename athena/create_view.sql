-- A convenience view: the model that answered (or was asked, for failed attempts), minute buckets.
CREATE OR REPLACE VIEW "${database}"."${view}" AS
SELECT
  *,
  coalesce(nullif(model_used, ''), model_requested) AS model,
  substr(ts, 1, 16) AS minute
FROM "${database}"."${table}"
