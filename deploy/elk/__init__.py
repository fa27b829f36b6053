"""Elasticsearch, Kibana, collector and Jaeger assets (templates, configs, saved objects)."""
