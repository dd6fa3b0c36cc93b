"""Coalition 5: a small but beautiful render-farm and job manager."""

__version__ = "5.0.0"
