"""OpenAI's embeddings protocol: ``POST /v1/embeddings`` and ``GET /v1/models`` (``routes``), with its
bodies and error body (``schemas``)."""
