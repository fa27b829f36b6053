"""Deployment assets and the local servers used in development and tests."""
