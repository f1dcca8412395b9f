"""Custom TFX components (added where the stock ones cannot do the job)."""
