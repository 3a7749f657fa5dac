"""TaskForge's Python client."""
