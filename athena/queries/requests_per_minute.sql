-- Requests, successes and 429s per minute and provider (compare with the provider's per-minute limit).
SELECT
  substr(ts, 1, 16) AS minute,
  provider,
  count(*) AS requests,
  count_if(status = 'ok') AS ok,
  count_if(status = 'rate_limited') AS rate_limited_429
FROM "${database}"."${table}"
WHERE dt >= '${since}'
GROUP BY 1, 2
ORDER BY minute, provider
