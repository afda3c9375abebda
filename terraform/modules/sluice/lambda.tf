# The transform: `sluice-partitioner`, a `bootstrap` binary for the provided.al2023 runtime.
resource "aws_lambda_function" "partitioner" {
  #checkov:skip=CKV_AWS_116:Firehose invokes the transform synchronously and retries it itself; a dead-letter queue never receives anything.
  #checkov:skip=CKV_AWS_117:The transform is a pure function that reaches no network resource; a VPC only adds cold-start time and NAT cost.
  #checkov:skip=CKV_AWS_272:The zip is built from source by the operator (scripts/build-lambda.sh); add an aws_lambda_code_signing_config in the root module where builds are signed.
  #checkov:skip=CKV_AWS_50:The transform makes no downstream calls to trace; its JSON logs and Firehose's metrics cover it.
  function_name                  = "${var.name}-partitioner"
  description                    = "sluice Firehose transform: validates records and returns their partition keys"
  filename                       = var.lambda_zip_path
  source_code_hash               = filebase64sha256(var.lambda_zip_path)
  handler                        = "bootstrap"
  runtime                        = "provided.al2023"
  architectures                  = [var.lambda_architecture]
  memory_size                    = var.lambda_memory_mb
  timeout                        = var.lambda_timeout_seconds
  reserved_concurrent_executions = var.lambda_reserved_concurrency
  role                           = aws_iam_role.lambda.arn
  kms_key_arn                    = aws_kms_key.sluice.arn
  tags                           = local.tags

  environment {
    variables = {
      SLUICE_MAX_FUTURE_HOURS = tostring(var.max_future_hours)
      SLUICE_LOG              = "info"
    }
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.lambda.name
  }

  depends_on = [aws_iam_role_policy.lambda]
}
