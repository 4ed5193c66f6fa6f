-- Spend and tokens per day, model, graph and node.
SELECT
  dt,
  coalesce(nullif(model_used, ''), model_requested) AS model,
  graph,
  node,
  count(*) AS requests,
  sum(prompt_tokens) AS prompt_tokens,
  sum(completion_tokens) AS completion_tokens,
  sum(total_tokens) AS total_tokens,
  round(sum(coalesce(cost_usd, 0e0)), 6) AS cost_usd,
  count_if(cost_usd IS NULL) AS unpriced_attempts
FROM "${database}"."${table}"
WHERE dt >= '${since}'
GROUP BY 1, 2, 3, 4
ORDER BY dt, cost_usd DESC, model, graph, node
