"""``python -m services.alerts receive``: the alert receiver deployable (see ``cli``)."""

from driftscope_llm.services.alerts.cli import app

app(prog_name="driftscope-alerts")
