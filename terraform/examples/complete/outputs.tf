output "topic_arn" {
  description = "Publish here: sluice publish --to sns://<topic_arn>."
  value       = module.sluice.topic_arn
}

output "lake_url" {
  description = "sluice query --lake <lake_url>."
  value       = module.sluice.lake_url
}

output "glue_database" {
  description = "sluice query --engine athena --database <glue_database>."
  value       = module.sluice.glue_database
}

output "athena_workgroup" {
  description = "sluice query --engine athena --workgroup <athena_workgroup>."
  value       = module.sluice.athena_workgroup
}

output "publisher_policy_arn" {
  description = "Attach to producers' roles."
  value       = module.sluice.publisher_policy_arn
}

output "analyst_policy_arn" {
  description = "Attach to analysts' roles."
  value       = module.sluice.analyst_policy_arn
}
