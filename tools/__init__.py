"""Operator and developer entry points that may import every service (the services and `shared/` never import these)."""
