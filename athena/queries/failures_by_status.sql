-- Failed attempts by status, HTTP status and error type.
SELECT
  status,
  http_status,
  error_type,
  provider,
  count(*) AS attempts
FROM "${database}"."${table}"
WHERE dt >= '${since}' AND status <> 'ok'
GROUP BY 1, 2, 3, 4
ORDER BY attempts DESC, status, http_status
