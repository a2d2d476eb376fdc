"""The collector: Kafka ``llm.outputs`` → signals → drift detectors → incidents and metrics.

Modules by what they hold: :mod:`.pipeline` (the per-event work shared with ``replay``),
:mod:`.service` (the long-running consumer loop over a bus), :mod:`.build` (assembly from
settings), :mod:`.signals`, :mod:`.segments`, :mod:`.embedder`, :mod:`.metrics`. Import them by
name; this package exports nothing itself, so importing it stays free of Kafka and ONNX.
"""

__all__: list[str] = []
