# Least privilege: each role may do its one job on this stack's resources only.

locals {
  glue_catalog_arn  = "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog"
  glue_database_arn = "arn:${local.partition}:glue:${local.region}:${local.account_id}:database/${aws_glue_catalog_database.sluice.name}"
  glue_table_arn    = "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${aws_glue_catalog_database.sluice.name}/logs"
}

# --- the transform Lambda ---------------------------------------------------------------------

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${var.name}-partitioner"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "lambda" {
  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
  statement {
    sid       = "ReadItsEncryptedEnvironment"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.sluice.arn]
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "transform"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

# --- the delivery stream ----------------------------------------------------------------------

data "aws_iam_policy_document" "firehose_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["firehose.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "firehose" {
  name               = "${var.name}-firehose"
  assume_role_policy = data.aws_iam_policy_document.firehose_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "firehose" {
  statement {
    sid       = "FindTheBucket"
    actions   = ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.lake.arn]
  }
  statement {
    sid       = "WriteLogsAndErrors"
    actions   = ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.lake.arn}/logs/*", "${aws_s3_bucket.lake.arn}/errors/*"]
  }
  statement {
    sid       = "EncryptWhatItWrites"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.sluice.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
  statement {
    sid       = "CallTheTransform"
    actions   = ["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"]
    resources = [aws_lambda_function.partitioner.arn, "${aws_lambda_function.partitioner.arn}:*"]
  }
  statement {
    sid       = "ReadTheTableSchema"
    actions   = ["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"]
    resources = [local.glue_catalog_arn, local.glue_database_arn, local.glue_table_arn]
  }
  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.firehose.arn}:*"]
  }
}

resource "aws_iam_role_policy" "firehose" {
  name   = "delivery"
  role   = aws_iam_role.firehose.id
  policy = data.aws_iam_policy_document.firehose.json
}

# --- the topic's subscription -----------------------------------------------------------------

data "aws_iam_policy_document" "sns_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "sns_to_firehose" {
  name               = "${var.name}-sns-to-firehose"
  assume_role_policy = data.aws_iam_policy_document.sns_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "sns_to_firehose" {
  statement {
    sid       = "DeliverToTheStream"
    actions   = ["firehose:DescribeDeliveryStream", "firehose:PutRecord", "firehose:PutRecordBatch"]
    resources = [aws_kinesis_firehose_delivery_stream.logs.arn]
  }
}

resource "aws_iam_role_policy" "sns_to_firehose" {
  name   = "deliver"
  role   = aws_iam_role.sns_to_firehose.id
  policy = data.aws_iam_policy_document.sns_to_firehose.json
}

# --- policies for people and services to attach -----------------------------------------------

data "aws_iam_policy_document" "publisher" {
  statement {
    sid       = "PublishRecords"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.logs.arn]
  }
  statement {
    sid       = "EncryptMessages"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.sluice.arn]
  }
}

resource "aws_iam_policy" "publisher" {
  name        = "${var.name}-publisher"
  description = "Publish records to the sluice topic (sluice publish --to sns://…, the Rust publisher)."
  policy      = data.aws_iam_policy_document.publisher.json
  tags        = local.tags
}

data "aws_iam_policy_document" "analyst" {
  statement {
    sid       = "RunQueries"
    actions   = ["athena:GetQueryExecution", "athena:GetQueryResults", "athena:GetWorkGroup", "athena:StartQueryExecution", "athena:StopQueryExecution"]
    resources = [aws_athena_workgroup.sluice.arn]
  }
  statement {
    sid       = "ReadTheCatalog"
    actions   = ["glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables", "glue:GetPartition", "glue:GetPartitions"]
    resources = [local.glue_catalog_arn, local.glue_database_arn, local.glue_table_arn]
  }
  statement {
    sid       = "FindTheBucket"
    actions   = ["s3:GetBucketLocation", "s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
  }
  statement {
    sid       = "ReadTheLake"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.lake.arn}/logs/*", "${aws_s3_bucket.lake.arn}/errors/*"]
  }
  statement {
    sid       = "WriteAndReadResults"
    actions   = ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.lake.arn}/athena-results/*", "${aws_s3_bucket.lake.arn}/exports/*"]
  }
  statement {
    sid       = "DecryptAndEncrypt"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.sluice.arn]
  }
}

resource "aws_iam_policy" "analyst" {
  name        = "${var.name}-analyst"
  description = "Query the sluice lake with Athena or DataFusion and hand out exports (sluice query, sluice serve --query-only)."
  policy      = data.aws_iam_policy_document.analyst.json
  tags        = local.tags
}
