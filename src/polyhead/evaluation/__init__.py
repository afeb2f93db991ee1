"""Evaluation: repeated cross-validated comparisons, the HTML report and its figures."""
