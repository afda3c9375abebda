# An example root module: one sluice stack in one region.
#
#   ./scripts/build-lambda.sh                # writes target/lambda/sluice-partitioner.zip
#   cd terraform/examples/complete
#   terraform init && terraform apply -var lambda_zip_path=../../../target/lambda/sluice-partitioner.zip

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

module "sluice" {
  source = "../../modules/sluice"

  name                        = var.name
  lambda_zip_path             = var.lambda_zip_path
  lambda_architecture         = var.lambda_architecture
  environments                = var.environments
  buffering_size_mb           = var.buffering_size_mb
  buffering_interval_seconds  = var.buffering_interval_seconds
  error_retention_days        = var.error_retention_days
  athena_bytes_scanned_cutoff = var.athena_bytes_scanned_cutoff
}
