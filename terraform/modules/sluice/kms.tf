# One customer-managed key encrypts the topic, the stream, the lake, Athena's results, the
# Lambda's environment and the log groups.
resource "aws_kms_key" "sluice" {
  description             = "sluice ${var.name}: topic, stream, lake, query results and logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "sluice" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.sluice.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:In a key policy, Resource "*" means this key and nothing else.
  #checkov:skip=CKV_AWS_111:In a key policy, Resource "*" means this key and nothing else.
  #checkov:skip=CKV_AWS_356:In a key policy, Resource "*" means this key and nothing else.
  statement {
    sid       = "AccountAdministersTheKeyThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsTheStackLogGroups"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/*/${var.name}-*"]
    }
  }
}
