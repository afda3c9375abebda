variable "region" {
  description = "AWS region of the stack."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "sluice"
}

variable "lambda_zip_path" {
  description = "The transform Lambda's zip, built by scripts/build-lambda.sh."
  type        = string
  default     = "../../../target/lambda/sluice-partitioner.zip"
}

variable "lambda_architecture" {
  description = "CPU architecture of the zip: x86_64 or arm64."
  type        = string
  default     = "x86_64"
}

variable "environments" {
  description = "Values of the environment partition (empty: injected projection)."
  type        = list(string)
  default     = ["dev", "hot", "xat", "prod"]
}

variable "buffering_size_mb" {
  description = "Firehose buffering hint in MB (64–128)."
  type        = number
  default     = 128
}

variable "buffering_interval_seconds" {
  description = "Firehose buffering hint in seconds (60–900)."
  type        = number
  default     = 300
}

variable "error_retention_days" {
  description = "Days rejected records are kept under errors/."
  type        = number
  default     = 14
}

variable "athena_bytes_scanned_cutoff" {
  description = "Bytes one Athena query may scan before it is cancelled."
  type        = number
  default     = 10737418240
}
