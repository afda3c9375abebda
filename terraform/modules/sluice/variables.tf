variable "name" {
  description = "Prefix of every resource name (topic, stream, function, roles, workgroup, Glue database)."
  type        = string
  default     = "sluice"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2–31 characters of a-z, 0-9 and -, starting with a letter."
  }
}

variable "bucket_name" {
  description = "Name of the lake bucket. Default: \"<name>-lake-<account id>-<region>\"."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a bucket that still holds data. Keep false in production."
  type        = bool
  default     = false
}

variable "lambda_zip_path" {
  description = "Path of the transform Lambda's zip (a `bootstrap` binary for provided.al2023), built by scripts/build-lambda.sh."
  type        = string
}

variable "lambda_architecture" {
  description = "CPU architecture of the zip: x86_64 or arm64."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "lambda_memory_mb" {
  description = "Memory of the transform Lambda in MB (CPU scales with it)."
  type        = number
  default     = 512
}

variable "lambda_timeout_seconds" {
  description = "Timeout of one transform invocation (Firehose allows at most 300)."
  type        = number
  default     = 60

  validation {
    condition     = var.lambda_timeout_seconds >= 1 && var.lambda_timeout_seconds <= 300
    error_message = "lambda_timeout_seconds must be between 1 and 300."
  }
}

variable "lambda_reserved_concurrency" {
  description = "Concurrent invocations reserved for (and capping) the transform Lambda."
  type        = number
  default     = 50
}

variable "lambda_buffer_size_mb" {
  description = "Firehose's buffer before one Lambda invocation, in MB (0.2–3)."
  type        = number
  default     = 1
}

variable "lambda_buffer_interval_seconds" {
  description = "Firehose's longest wait before one Lambda invocation, in seconds (60–900)."
  type        = number
  default     = 60
}

variable "max_future_hours" {
  description = "Records whose time is more than this many hours in the future are rejected as time_out_of_range."
  type        = number
  default     = 24
}

variable "buffering_size_mb" {
  description = "Firehose buffering hint: size of one Parquet file before it is written, in MB (64–128 with dynamic partitioning)."
  type        = number
  default     = 128

  validation {
    condition     = var.buffering_size_mb >= 64 && var.buffering_size_mb <= 128
    error_message = "buffering_size_mb must be between 64 and 128 with dynamic partitioning."
  }
}

variable "buffering_interval_seconds" {
  description = "Firehose buffering hint: the longest wait before a partition's buffer is written, in seconds (60–900)."
  type        = number
  default     = 300

  validation {
    condition     = var.buffering_interval_seconds >= 60 && var.buffering_interval_seconds <= 900
    error_message = "buffering_interval_seconds must be between 60 and 900."
  }
}

variable "error_retention_days" {
  description = "Days the error output (errors/, records the transform rejected) is kept before it expires."
  type        = number
  default     = 14
}

variable "log_retention_days" {
  description = "Days the Lambda's and Firehose's CloudWatch log groups are kept."
  type        = number
  default     = 365
}

variable "environments" {
  description = "Values of the environment partition. Empty: Athena's `injected` projection (queries must name the environment); otherwise an `enum` projection of these values."
  type        = list(string)
  default     = []
}

variable "organizations" {
  description = "Values of the organization partition. Empty: `injected` projection (queries must name the organization); otherwise an `enum` projection of these values."
  type        = list(string)
  default     = []
}

variable "extra_log_types" {
  description = "Log types registered besides the built-in ones (add their schemas/ files to the Lambda with SLUICE_SCHEMAS_DIR)."
  type        = list(string)
  default     = []
}

variable "projection_years" {
  description = "First and last year of the year partition's projection."
  type        = tuple([number, number])
  default     = [2020, 2040]
}

variable "athena_bytes_scanned_cutoff" {
  description = "Athena cancels a query of the workgroup once it has scanned this many bytes (at least 10 MB)."
  type        = number
  default     = 10737418240

  validation {
    condition     = var.athena_bytes_scanned_cutoff >= 10485760
    error_message = "athena_bytes_scanned_cutoff must be at least 10 MB (10485760)."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
