output "topic_arn" {
  description = "The SNS topic producers publish to: `sluice publish --to sns://<topic_arn>`."
  value       = aws_sns_topic.logs.arn
}

output "delivery_stream_name" {
  description = "The Firehose delivery stream."
  value       = aws_kinesis_firehose_delivery_stream.logs.name
}

output "bucket" {
  description = "The lake bucket."
  value       = aws_s3_bucket.lake.bucket
}

output "lake_url" {
  description = "The lake for `sluice query --lake`, `sluice serve --query-only --lake`, import and replay."
  value       = "s3://${aws_s3_bucket.lake.bucket}"
}

output "lambda_function_name" {
  description = "The transform Lambda."
  value       = aws_lambda_function.partitioner.function_name
}

output "glue_database" {
  description = "The Glue database holding the `logs` table: `sluice query --engine athena --database <glue_database>`."
  value       = aws_glue_catalog_database.sluice.name
}

output "athena_workgroup" {
  description = "The Athena workgroup: `sluice query --engine athena --workgroup <athena_workgroup>`."
  value       = aws_athena_workgroup.sluice.name
}

output "kms_key_arn" {
  description = "The key encrypting the topic, stream, lake, results and logs."
  value       = aws_kms_key.sluice.arn
}

output "publisher_policy_arn" {
  description = "Attach to the roles of services that publish records."
  value       = aws_iam_policy.publisher.arn
}

output "analyst_policy_arn" {
  description = "Attach to the roles of analysts and of the query/export server."
  value       = aws_iam_policy.analyst.arn
}
