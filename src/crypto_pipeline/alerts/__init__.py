"""Price-spike alerts, run inside the Spark job: rules, publisher, webhook."""
