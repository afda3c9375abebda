# An example root module: a Firehose stream that delivers into a `sluice serve` through its HTTP
# endpoint destination (docs/firehose.md). Producers put records on the stream as they would for
# any Firehose; the server answers with Firehose's response, and Firehose retries what was not
# made durable, then backs the rest up to S3.
#
#   aws secretsmanager create-secret --name sluice-firehose-key \
#       --secret-string "{\"api_key\": \"$(openssl rand -base64 32)\"}"
#   # the same key (or its sha256) in the server's --firehose-keys file, bound to its organizations
#   cd terraform/examples/firehose-http-endpoint
#   terraform init && terraform apply -var endpoint_url=https://sluice.example.com/firehose \
#       -var access_key_secret_arn=… -var backup_bucket_arn=… -var kms_key_arn=…

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60"
    }
  }
}

provider "aws" {
  region = var.region
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["firehose.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "firehose" {
  name               = "${var.name}-firehose-http"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

# What the stream needs: the access key from Secrets Manager, the backup bucket for records it
# could not deliver, the KMS key of both, and its own error logs.
data "aws_iam_policy_document" "firehose" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.access_key_secret_arn]
  }
  statement {
    actions   = ["s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:PutObject"]
    resources = [var.backup_bucket_arn, "${var.backup_bucket_arn}/${var.backup_prefix}*"]
  }
  statement {
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
  statement {
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.firehose.arn}:*"]
  }
}

resource "aws_iam_role_policy" "firehose" {
  role   = aws_iam_role.firehose.id
  policy = data.aws_iam_policy_document.firehose.json
}

resource "aws_cloudwatch_log_group" "firehose" {
  name              = "/aws/kinesisfirehose/${var.name}-http"
  retention_in_days = 365
  kms_key_id        = var.kms_key_arn
}

resource "aws_cloudwatch_log_stream" "firehose" {
  name           = "HttpEndpointDelivery"
  log_group_name = aws_cloudwatch_log_group.firehose.name
}

resource "aws_kinesis_firehose_delivery_stream" "sluice" {
  name        = "${var.name}-to-sluice"
  destination = "http_endpoint"

  server_side_encryption {
    enabled  = true
    key_type = "CUSTOMER_MANAGED_CMK"
    key_arn  = var.kms_key_arn
  }

  http_endpoint_configuration {
    name               = "sluice"
    url                = var.endpoint_url
    role_arn           = aws_iam_role.firehose.arn
    buffering_size     = var.buffering_size_mb
    buffering_interval = var.buffering_interval_seconds
    retry_duration     = 3600
    s3_backup_mode     = "FailedDataOnly"

    # The access key sent in X-Amz-Firehose-Access-Key, read from the secret's "api_key".
    secrets_manager_configuration {
      enabled    = true
      secret_arn = var.access_key_secret_arn
      role_arn   = aws_iam_role.firehose.arn
    }

    request_configuration {
      content_encoding = "GZIP"

      # Defaults for records that name none (docs/firehose.md): organization, environment, log_type.
      dynamic "common_attributes" {
        for_each = var.common_attributes
        content {
          name  = common_attributes.key
          value = common_attributes.value
        }
      }
    }

    s3_configuration {
      role_arn           = aws_iam_role.firehose.arn
      bucket_arn         = var.backup_bucket_arn
      prefix             = var.backup_prefix
      kms_key_arn        = var.kms_key_arn
      compression_format = "GZIP"
    }

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = aws_cloudwatch_log_stream.firehose.name
    }
  }
}
