"""Importing this module is the failure: the allow-list must refuse it without importing."""

raise AssertionError("tests.never_imported was imported by a forbidden func check")
