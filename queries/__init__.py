"""The read side: incident-review queries of Elasticsearch (`wwts logs search`,
`wwts trace show/slow`). It imports the names telemetry writes, never the reverse."""
