-- Per deployment (provider + account + model) and minute: requests and tokens against the limits in force
-- (the profile's, or one learned from the provider), and each minute's share of the pooled capacity.
WITH per_deployment AS (
  SELECT
    substr(ts, 1, 16) AS minute,
    provider,
    account,
    deployment,
    count(*) AS requests,
    count_if(status = 'rate_limited') AS rate_limited_429,
    sum(total_tokens) AS tokens,
    max(limit_rpm) AS limit_rpm,
    max(limit_tpm) AS limit_tpm,
    max(learned_limit) AS learned_limit
  FROM "${database}"."${table}"
  WHERE dt >= '${since}' AND deployment <> ''
  GROUP BY 1, 2, 3, 4
)
SELECT
  minute,
  provider,
  account,
  deployment,
  requests,
  rate_limited_429,
  tokens,
  limit_rpm,
  limit_tpm,
  learned_limit,
  CAST(requests AS double) / nullif(limit_rpm, 0) AS rpm_utilization,
  CAST(tokens AS double) / nullif(limit_tpm, 0) AS tpm_utilization,
  CAST(sum(requests) OVER (PARTITION BY minute) AS double)
    / nullif(sum(limit_rpm) OVER (PARTITION BY minute), 0) AS pooled_rpm_share
FROM per_deployment
ORDER BY minute, deployment
