resource "aws_cloudwatch_log_group" "lambda" {
  name              = "/aws/lambda/${var.name}-partitioner"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.sluice.arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "firehose" {
  name              = "/aws/kinesisfirehose/${var.name}-logs"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.sluice.arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_stream" "firehose_delivery" {
  name           = "DestinationDelivery"
  log_group_name = aws_cloudwatch_log_group.firehose.name
}
