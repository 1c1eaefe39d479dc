"""CRM analytics: RFM segments, lifetime value and churn, recommendations, campaign uplift.

Everything here is pure computation over Arrow tables and NumPy arrays: the store is read into
Arrow by the caller, and SQL runs on embedded DuckDB or, transpiled with sqlglot, on Spark.
"""
