output "stream_name" {
  description = "The Firehose stream producers put records on."
  value       = aws_kinesis_firehose_delivery_stream.sluice.name
}

output "stream_arn" {
  description = "The stream's ARN."
  value       = aws_kinesis_firehose_delivery_stream.sluice.arn
}
