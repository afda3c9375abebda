# The `logs` table. Its columns come from schemas/ through schema.tf.json, written by
# `sluice schema glue --format tf-json`; partitions are projected, never crawled.
resource "aws_glue_catalog_database" "sluice" {
  name        = replace(var.name, "-", "_")
  description = "sluice ${var.name}: the log lake"
}

locals {
  environment_projection = length(var.environments) == 0 ? {
    "projection.environment.type" = "injected"
    } : {
    "projection.environment.type"   = "enum"
    "projection.environment.values" = join(",", var.environments)
  }
  organization_projection = length(var.organizations) == 0 ? {
    "projection.organization.type" = "injected"
    } : {
    "projection.organization.type"   = "enum"
    "projection.organization.values" = join(",", var.organizations)
  }
  lake_root = "s3://${aws_s3_bucket.lake.bucket}/logs"
}

resource "aws_glue_catalog_table" "logs" {
  name          = "logs"
  database_name = aws_glue_catalog_database.sluice.name
  description   = "Every record; one folder per environment, organization, log type and UTC hour."
  table_type    = "EXTERNAL_TABLE"

  parameters = merge(
    {
      "EXTERNAL"                  = "TRUE"
      "classification"            = "parquet"
      "parquet.compression"       = "SNAPPY"
      "projection.enabled"        = "true"
      "projection.logtype.type"   = "enum"
      "projection.logtype.values" = join(",", local.log_types)
      "projection.year.type"      = "integer"
      "projection.year.range"     = "${var.projection_years[0]},${var.projection_years[1]}"
      "projection.year.digits"    = "4"
      "projection.month.type"     = "integer"
      "projection.month.range"    = "1,12"
      "projection.month.digits"   = "2"
      "projection.day.type"       = "integer"
      "projection.day.range"      = "1,31"
      "projection.day.digits"     = "2"
      "projection.hour.type"      = "integer"
      "projection.hour.range"     = "0,23"
      "projection.hour.digits"    = "2"
      "storage.location.template" = "${local.lake_root}/environment=$${environment}/organization=$${organization}/logtype=$${logtype}/year=$${year}/month=$${month}/day=$${day}/hour=$${hour}/"
    },
    local.environment_projection,
    local.organization_projection,
  )

  dynamic "partition_keys" {
    for_each = local.sluice_partition_keys
    content {
      name    = partition_keys.value.name
      type    = partition_keys.value.type
      comment = partition_keys.value.comment
    }
  }

  storage_descriptor {
    location      = "${local.lake_root}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters = {
        "serialization.format" = "1"
      }
    }

    dynamic "columns" {
      for_each = local.sluice_columns
      content {
        name    = columns.value.name
        type    = columns.value.type
        comment = columns.value.comment
      }
    }
  }
}
