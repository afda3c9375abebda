# Analysts' queries (`sluice query --engine athena`, the export API in AWS mode) run in this
# workgroup: results go to athena-results/ (expired after a day), encrypted, and a query is
# cancelled past the bytes-scanned cutoff.
resource "aws_athena_workgroup" "sluice" {
  name          = var.name
  description   = "sluice ${var.name}: SQL over the log lake"
  force_destroy = true
  tags          = local.tags

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "s3://${aws_s3_bucket.lake.bucket}/athena-results/"

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.sluice.arn
      }
    }
  }
}
