-- Provider spend per execution; `stepgraph usage report` adds each run's AWS estimate beside it
-- (aws_estimate_usd, from its items and requests and the price table, see docs/costs.md).
SELECT
  execution_id,
  min(graph) AS graph,
  count(DISTINCT item_id) AS items,
  count(*) AS requests,
  count_if(NOT coalesce(is_free, false)) AS paid_requests,
  count_if(http_status = 429) AS rate_limited,
  sum(prompt_tokens) AS prompt_tokens,
  sum(completion_tokens) AS completion_tokens,
  round(sum(coalesce(cost_usd, 0e0)), 6) AS cost_usd,
  min(ts) AS first_ts,
  max(ts) AS last_ts
FROM "${database}"."${table}"
WHERE dt >= '${since}'
GROUP BY 1
ORDER BY cost_usd DESC, execution_id
