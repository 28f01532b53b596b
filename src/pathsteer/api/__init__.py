"""The HTTP API (``/api/v1/``, OpenAPI at ``/api/v1/openapi.json``), the dashboard (``/``) and
Prometheus ``/metrics``: one component (``api``) serving FastAPI through uvicorn on the
daemon's own asyncio loop. See `pathsteer.api.service` (the component), `pathsteer.api.app`
(the routes), `pathsteer.api.models` (the response models the OpenAPI document is made of)."""
