-- Free-model requests per UTC day and provider vs OpenRouter's daily limits (50, or 1,000 with >= 10 credits
-- bought). Failed attempts count against the limit too. Remaining stops at 0; over_* says by how much a
-- day went past a limit (the provider answered those with 429s).
SELECT
  dt,
  provider,
  count(*) AS free_requests,
  greatest(50 - count(*), 0) AS remaining_of_50,
  greatest(count(*) - 50, 0) AS over_50_by,
  greatest(1000 - count(*), 0) AS remaining_of_1000,
  greatest(count(*) - 1000, 0) AS over_1000_by
FROM "${database}"."${table}"
WHERE dt >= '${since}' AND is_free
GROUP BY 1, 2
ORDER BY dt, provider
