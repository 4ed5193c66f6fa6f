-- The threads (items) that cost the most.
SELECT
  thread_id,
  graph,
  count(*) AS attempts,
  sum(total_tokens) AS total_tokens,
  round(sum(coalesce(cost_usd, 0e0)), 6) AS cost_usd
FROM "${database}"."${table}"
WHERE dt >= '${since}'
GROUP BY 1, 2
ORDER BY cost_usd DESC, total_tokens DESC, thread_id
LIMIT 20
