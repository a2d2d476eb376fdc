"""The machinery behind ``deploy/local/stack`` (standard library only; see that script)."""
