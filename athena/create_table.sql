-- The usage table over s3://${bucket}/usage/dt=YYYY-MM-DD/…/*.jsonl[.gz] (one record per provider attempt).
-- Partition projection: no crawler and no MSCK REPAIR; new days are queryable at once.
-- Columns mirror stepgraph.usage.record.UsageRecord (a test checks they never drift).
CREATE EXTERNAL TABLE IF NOT EXISTS `${database}`.`${table}` (
  `schema_version` int,
  `record_id` string,
  `ts` string,
  `execution_id` string,
  `item_id` string,
  `thread_id` string,
  `graph` string,
  `node` string,
  `attempt` int,
  `provider` string,
  `key_label` string,
  `model_requested` string,
  `model_used` string,
  `generation_id` string,
  `status` string,
  `http_status` int,
  `error_type` string,
  `prompt_tokens` bigint,
  `completion_tokens` bigint,
  `reasoning_tokens` bigint,
  `cached_tokens` bigint,
  `total_tokens` bigint,
  `cost_usd` double,
  `cost_source` string,
  `is_free` boolean,
  `streamed` boolean,
  `latency_ms` bigint,
  `ttft_ms` bigint,
  `limiter_wait_ms` bigint,
  `fallback` boolean
)
PARTITIONED BY (`dt` string)
ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://${bucket}/usage/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2025-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://${bucket}/usage/dt=${dt}/'
);
