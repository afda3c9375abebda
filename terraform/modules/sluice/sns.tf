# Producers publish records (one JSON object a message) to this topic; it delivers them to the
# delivery stream with raw message delivery, so the transform sees the record itself.
resource "aws_sns_topic" "logs" {
  name              = "${var.name}-logs"
  kms_master_key_id = aws_kms_key.sluice.id
  tags              = local.tags
}

resource "aws_sns_topic_subscription" "firehose" {
  topic_arn             = aws_sns_topic.logs.arn
  protocol              = "firehose"
  endpoint              = aws_kinesis_firehose_delivery_stream.logs.arn
  subscription_role_arn = aws_iam_role.sns_to_firehose.arn
  raw_message_delivery  = true
}
