-- Free-model requests per UTC day and provider vs OpenRouter's daily limits (50, or 1,000 with >= 10 credits
-- bought). Failed attempts count against the limit too.
SELECT
  dt,
  provider,
  count(*) AS free_requests,
  50 - count(*) AS remaining_of_50,
  1000 - count(*) AS remaining_of_1000
FROM "${database}"."${table}"
WHERE dt >= '${since}' AND is_free
GROUP BY 1, 2
ORDER BY dt, provider
