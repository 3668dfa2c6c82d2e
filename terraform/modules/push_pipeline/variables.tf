variable "topic_name" {
  type        = string
  description = "The topic messages are published on. Its push subscription is <topic_name><push_suffix>; the dead-letter topic and its subscription are both <topic_name>-dead-letter (the names scripts/localstack.py gives them in the emulator)."
}

variable "push_suffix" {
  type        = string
  description = "What the push subscription's name adds to topic_name, such as -sender."
}

variable "push_endpoint" {
  type        = string
  description = "The URL of the function the subscription pushes to (its service_config[0].uri)."
}

variable "service" {
  type        = string
  description = "The Cloud Run service of that function (a gen2 function's name): only push_service_account may invoke it."
}

variable "region" {
  type        = string
  description = "The region of that service."
}

variable "push_service_account" {
  type        = string
  description = "Email of the identity in the OIDC token Pub/Sub attaches to each push; granted roles/run.invoker on the service."
}

variable "pubsub_service_agent" {
  type        = string
  description = "Email of the project's Pub/Sub service agent (service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com), which forwards dead letters."
}

variable "ack_deadline_seconds" {
  type        = number
  description = "The pushed function's timeout_seconds: for push, the ack deadline is also the request timeout, so it must cover the function's own or Pub/Sub redelivers while the function still works (10 to 600)."
}

variable "retry_minimum_backoff" {
  type        = string
  description = "Shortest wait before a failed push is retried, such as 10s."
}

variable "retry_maximum_backoff" {
  type        = string
  description = "Longest wait before a failed push is retried, such as 600s."
}

variable "max_delivery_attempts" {
  type        = number
  description = "Pushes of one message before Pub/Sub moves it to the dead-letter topic (5 to 100)."
}

variable "dead_letter_retention" {
  type        = string
  description = "How long the dead-letter subscription keeps a message, such as 2678400s."
}
