"""ye-run: a declarative YAML scenario runner for the PostgreSQL-driven ad-image pipeline."""

__version__ = "0.1.0"
