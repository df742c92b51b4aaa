"""Grafana side of pathwatch: dashboards as code, provisioning and alarm annotations."""
