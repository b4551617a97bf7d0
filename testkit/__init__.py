"""What the tests and the benchmarks share: the servers they start (Kafka, Redis, PostgreSQL), the desk as
processes, test data and Kafka helpers. Neither `services/` nor `shared/` imports it."""
