"""The Kafka-facing runtime. Only this package (and the test instruments) talk to the broker."""
