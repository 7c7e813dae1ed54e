"""The OpenAPI 3.0 document served at /openapi.json (and fuzzed by the tests)."""

from __future__ import annotations

from typing import Any

from recommender.serving import DEFAULT_K, MAX_BASKET, MAX_K

__all__ = ["openapi_document"]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_RECS = {"$ref": "#/components/schemas/Recommendations"}
_BASKET = {
    "type": "object",
    "required": ["books"],
    "properties": {
        "books": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_BASKET},
        "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": DEFAULT_K},
    },
}
_HEALTH = {
    "get": {
        "responses": {
            "200": _json({"type": "object"}, "healthy"),
            "503": _json(_ERROR, "not ready"),
        }
    }
}


def openapi_document(version: str, model: str) -> dict[str, Any]:
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "example": model}
    errors = {
        "400": _json(_ERROR, "malformed JSON"),
        "413": _json(_ERROR, "body too large"),
        "422": _json(_ERROR, "invalid field"),
        "503": _json(_ERROR, "no model loaded yet"),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Bookstore recommender", "version": version},
        "paths": {
            "/v1/books/{book_id}/also-bought": {
                "get": {
                    "summary": "Books bought together with this one",
                    "parameters": [
                        {"name": "book_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "k", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": DEFAULT_K}},
                    ],
                    "responses": {"200": _json(_RECS, "neighbours, filled up with popular books"),
                                  "404": _json(_ERROR, "unknown book"), **errors},
                }
            },
            "/v1/recommendations": {
                "post": {
                    "summary": "Recommendations for a basket of books",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _BASKET}}},
                    "responses": {"200": _json(_RECS, "recommendations"), **errors},
                }
            },
            "/v1/models/{name}": {
                "get": {
                    "summary": "KServe V1 model status",
                    "parameters": [name_param],
                    "responses": {"200": _json({"type": "object"}, "model status"),
                                  "404": _json(_ERROR, "unknown model")},
                }
            },
            "/v1/models/{name}:predict": {
                "post": {
                    "summary": "KServe V1 predict: one basket per instance",
                    "parameters": [name_param],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {
                            "type": "object", "required": ["instances"],
                            "properties": {"instances": {"type": "array", "maxItems": MAX_BASKET, "items": {
                                "oneOf": [_BASKET, {"type": "array", "items": {"type": "string"}}]}}},
                        }}},
                    },
                    "responses": {"200": _json({"type": "object"}, "predictions"),
                                  "404": _json(_ERROR, "unknown model"), **errors},
                }
            },
            "/live": _HEALTH,
            "/ready": _HEALTH,
            "/v2/health/live": _HEALTH,
            "/v2/health/ready": _HEALTH,
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Recommendations": {
                    "type": "object",
                    "properties": {
                        "model_version": {"type": "string"},
                        "recommendations": {"type": "array", "items": {"type": "object", "properties": {
                            "book_id": {"type": "string"}, "score": {"type": "number"},
                            "source": {"type": "string", "enum": ["similar", "popular"]}}}},
                    },
                },
            }
        },
    }
