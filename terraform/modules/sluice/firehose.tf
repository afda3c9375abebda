# Buffers records, calls the transform Lambda (which validates them and returns their partition
# keys), converts them to Parquet with the Glue table's schema and writes one file per partition
# and buffer under logs/…; records the transform rejects land under errors/.
resource "aws_kinesis_firehose_delivery_stream" "logs" {
  name        = "${var.name}-logs"
  destination = "extended_s3"
  tags        = local.tags

  server_side_encryption {
    enabled  = true
    key_type = "CUSTOMER_MANAGED_CMK"
    key_arn  = aws_kms_key.sluice.arn
  }

  extended_s3_configuration {
    role_arn            = aws_iam_role.firehose.arn
    bucket_arn          = aws_s3_bucket.lake.arn
    kms_key_arn         = aws_kms_key.sluice.arn
    prefix              = local.logs_prefix
    error_output_prefix = local.errors_prefix
    file_extension      = ".parquet"
    buffering_size      = var.buffering_size_mb
    buffering_interval  = var.buffering_interval_seconds
    # Parquet compresses its pages itself; Firehose requires UNCOMPRESSED with format conversion.
    compression_format = "UNCOMPRESSED"

    dynamic_partitioning_configuration {
      enabled        = true
      retry_duration = 300
    }

    processing_configuration {
      enabled = true

      processors {
        type = "Lambda"

        parameters {
          parameter_name  = "LambdaArn"
          parameter_value = "${aws_lambda_function.partitioner.arn}:$LATEST"
        }
        parameters {
          parameter_name  = "BufferSizeInMBs"
          parameter_value = tostring(var.lambda_buffer_size_mb)
        }
        parameters {
          parameter_name  = "BufferIntervalInSeconds"
          parameter_value = tostring(var.lambda_buffer_interval_seconds)
        }
        parameters {
          parameter_name  = "NumberOfRetries"
          parameter_value = "3"
        }
      }
    }

    data_format_conversion_configuration {
      enabled = true

      input_format_configuration {
        deserializer {
          # The transform writes snake_case keys and RFC 3339 UTC times ("…Z"), which the
          # OpenX JSON SerDe reads as Glue timestamps.
          open_x_json_ser_de {
            case_insensitive = false
          }
        }
      }

      output_format_configuration {
        serializer {
          parquet_ser_de {
            compression = "SNAPPY"
          }
        }
      }

      schema_configuration {
        database_name = aws_glue_catalog_database.sluice.name
        table_name    = aws_glue_catalog_table.logs.name
        role_arn      = aws_iam_role.firehose.arn
        region        = local.region
        version_id    = "LATEST"
      }
    }

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = aws_cloudwatch_log_stream.firehose_delivery.name
    }
  }
}
