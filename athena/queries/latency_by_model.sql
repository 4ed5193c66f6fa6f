-- Latency percentiles of successful attempts per model (milliseconds).
SELECT
  coalesce(nullif(model_used, ''), model_requested) AS model,
  count(*) AS requests,
  approx_percentile(latency_ms, 0.5) AS p50_ms,
  approx_percentile(latency_ms, 0.95) AS p95_ms,
  approx_percentile(latency_ms, 0.99) AS p99_ms,
  max(latency_ms) AS max_ms
FROM "${database}"."${table}"
WHERE dt >= '${since}' AND status = 'ok'
GROUP BY 1
ORDER BY model
