output "topic_id" {
  description = "The topic's id, for publisher grants."
  value       = google_pubsub_topic.topic.id
}

output "topic_name" {
  description = "The topic's name, for publishers' configuration."
  value       = google_pubsub_topic.topic.name
}

output "push_subscription_name" {
  description = "The push subscription's name, for dashboards."
  value       = google_pubsub_subscription.push.name
}

output "dead_letter_subscription_id" {
  description = "The pull subscription holding the messages Pub/Sub gave up pushing."
  value       = google_pubsub_subscription.dead_letter.id
}

output "dead_letter_subscription_name" {
  description = "The dead-letter subscription's name, for alerts and dashboards."
  value       = google_pubsub_subscription.dead_letter.name
}
