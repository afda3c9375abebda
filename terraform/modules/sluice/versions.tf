terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60"
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  bucket     = coalesce(var.bucket_name, "${var.name}-lake-${local.account_id}-${local.region}")

  # The lake layout of DESIGN.md §2, the same keys the embedded writer uses.
  logs_prefix   = "logs/environment=!{partitionKeyFromLambda:environment}/organization=!{partitionKeyFromLambda:organization}/logtype=!{partitionKeyFromLambda:logtype}/year=!{partitionKeyFromLambda:year}/month=!{partitionKeyFromLambda:month}/day=!{partitionKeyFromLambda:day}/hour=!{partitionKeyFromLambda:hour}/"
  errors_prefix = "errors/!{firehose:error-output-type}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"

  log_types = distinct(concat(local.sluice_log_types, var.extra_log_types))

  tags = merge({ "app" = "sluice", "sluice:stack" = var.name }, var.tags)
}
