"""``python -m driftscope_llm.services.alerts receive``: the alert receiver deployable.

An entry-point shim (the one upward import docs/architecture.md allows by name): the command
itself is :mod:`driftscope_llm.services.cli.alerts`.
"""

from driftscope_llm.services.cli.alerts import app

app(prog_name="driftscope-alerts")
