"""Activities: thin adapters over Kubernetes, MariaDB and OpenStack."""
