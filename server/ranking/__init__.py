"""What one ranking computes: a Pipeline of named Stages over a Batch of columns.

Pure computation: this package imports numpy and features/ (the method's
formulas, rows and model inputs) only. No I/O happens in a stage: the user's
row is read before the pipeline runs, and items come from the in-memory cache.
"""
