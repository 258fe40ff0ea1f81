"""Date and time formats for the researcher's pages (settings.FORMAT_MODULE_PATH)."""
