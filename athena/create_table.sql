-- The usage table over s3://${bucket}/usage/dt=YYYY-MM-DD/…/*.jsonl[.gz] (one record per provider attempt).
-- Partition projection: no crawler and no MSCK REPAIR; new days are queryable at once.
-- The column list is filled from stepgraph.usage.record.UsageRecord (stepgraph.usage.sql.ddl), the one schema.
CREATE EXTERNAL TABLE IF NOT EXISTS `${database}`.`${table}` (
${columns}
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
