"""Result tables and plots."""

from emodistill.report.tables import aggregate, to_markdown

__all__ = ["aggregate", "to_markdown"]
