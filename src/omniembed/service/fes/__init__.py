"""The vitrivr feature-extraction-server's protocol: durable jobs under ``/api/tasks/...`` (``routes``),
with its bodies and error body (``schemas``)."""
