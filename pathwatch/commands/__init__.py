"""CLI command modules; each attaches its commands to the apps in `pathwatch.app`."""
