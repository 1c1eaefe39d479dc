"""Earning rules: the rule model, CEL compilation and the pure decision function."""
