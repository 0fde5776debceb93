"""mibench: benchmark mutual-information estimators on tasks whose true MI is known."""

__version__ = "0.1.0"
