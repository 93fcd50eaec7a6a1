"""TwelveLabs' protocol: ``POST /v1.3/embed`` and Embed v2 (``routes``), the video embedding tasks of v1.3
and v2 (``task_routes``), durable in the job store (``tasks``), the request fitting and Marengo model
mapping (``embed``), Embed v2's requests (``embed_v2``), and its bodies and error body (``schemas``).

Nothing here is imported by ``import omniembed`` but ``embed`` and ``schemas`` (``omniembed.Client``), which
import no web framework.
"""
