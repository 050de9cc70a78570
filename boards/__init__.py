"""Pictures of the Grafana boards, drawn from their own queries against a live Prometheus."""
