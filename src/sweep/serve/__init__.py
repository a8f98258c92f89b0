"""What serves or shows a store: the report, `ui`, `server` and `dashboard`."""
