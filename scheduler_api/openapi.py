"""Placeholder: replaced by the full OpenAPI 3.1 document."""
from __future__ import annotations
from typing import Any

def openapi_document(server_url: str) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "scheduler_api", "version": "0"}, "paths": {}}
