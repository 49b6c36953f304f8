"""Validation-result notifications: DHIS2's validation rules, templates, results and their messages."""
