variable "region" {
  description = "AWS region of the stream."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "sluice"
}

variable "endpoint_url" {
  description = "The server's Firehose endpoint: https://HOST/firehose (Firehose needs HTTPS on port 443)."
  type        = string

  validation {
    condition     = startswith(var.endpoint_url, "https://") && endswith(var.endpoint_url, "/firehose")
    error_message = "endpoint_url must be https://HOST/firehose."
  }
}

variable "access_key_secret_arn" {
  description = "A Secrets Manager secret holding {\"api_key\": \"…\"}: a key of the server's --firehose-keys file."
  type        = string
}

variable "backup_bucket_arn" {
  description = "The S3 bucket for records Firehose could not deliver within its retry duration."
  type        = string
}

variable "backup_prefix" {
  description = "Key prefix of the backed-up records."
  type        = string
  default     = "firehose-http-failed/"
}

variable "kms_key_arn" {
  description = "The KMS key that encrypts the stream, its backups and its logs."
  type        = string
}

variable "buffering_size_mb" {
  description = "Buffer size in MiB; with base64 a request is 4/3 of it and must stay under the server's --max-body (16 MiB)."
  type        = number
  default     = 10

  validation {
    condition     = var.buffering_size_mb >= 1 && var.buffering_size_mb <= 12
    error_message = "buffering_size_mb must be 1 to 12 to fit the server's default 16 MiB body limit."
  }
}

variable "buffering_interval_seconds" {
  description = "Buffer interval in seconds."
  type        = number
  default     = 60
}

variable "common_attributes" {
  description = "Defaults for records that name none: organization, environment, log_type."
  type        = map(string)
  default     = {}
}
