"""The OpenAPI document: the routes, and the model's input schema from its signature."""

from __future__ import annotations

from typing import Any

from modelpack.signature import ColumnSchema, Signature

_JSON_TYPES = {
    "boolean": "boolean",
    "integer": "integer",
    "long": "integer",
    "float": "number",
    "double": "number",
    "string": "string",
    "binary": "string",
    "datetime": "string",
}


def _input_schema(signature: Signature | None) -> dict[str, Any]:
    if signature is None or signature.inputs is None:
        return {"type": "object", "description": "The model has no signature; any input."}
    if isinstance(signature.inputs, ColumnSchema):
        columns = signature.inputs.columns
        record = {
            "type": "object",
            "properties": {
                c.name: {
                    "type": _JSON_TYPES[c.type],
                    **({"format": "byte"} if c.type == "binary" else {}),
                    **({"format": "date-time"} if c.type == "datetime" else {}),
                }
                for c in columns
            },
            "required": [c.name for c in columns if c.required],
        }
        return {
            "type": "object",
            "description": "Exactly one of dataframe_split, dataframe_records, instances, inputs.",
            "properties": {
                "dataframe_split": {
                    "type": "object",
                    "properties": {
                        "columns": {
                            "type": "array",
                            "items": {"type": "string"},
                            "example": [c.name for c in columns],
                        },
                        "data": {"type": "array", "items": {"type": "array"}},
                    },
                },
                "dataframe_records": {"type": "array", "items": record},
                "instances": {"type": "array", "items": record},
                "inputs": {"type": "object"},
                "params": {"type": "object"},
            },
        }
    tensors = {
        t.name or "input": {"type": "array", "description": f"{t.dtype}, shape {list(t.shape)}"}
        for t in signature.inputs.tensors
    }
    return {
        "type": "object",
        "properties": {
            "inputs": next(iter(tensors.values()))
            if len(tensors) == 1
            else {"type": "object", "properties": tensors},
            "params": {"type": "object"},
        },
    }


def document(name: str, version: str, signature: Signature | None) -> dict[str, Any]:
    error = {
        "type": "object",
        "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
    }
    simple = {"200": {"description": "OK"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"modelpack: {name}", "version": version},
        "paths": {
            "/invocations": {
                "post": {
                    "summary": "Predict (MLflow scoring protocol)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Request"}
                            },
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Predictions",
                            "content": {
                                "application/json": {
                                    "schema": {"type": "object", "properties": {"predictions": {}}}
                                }
                            },
                        },
                        **{
                            code: {
                                "description": why,
                                "content": {
                                    "application/json": {
                                        "schema": {"$ref": "#/components/schemas/Error"}
                                    }
                                },
                            }
                            for code, why in (
                                ("400", "Bad input"),
                                ("413", "Too large"),
                                ("415", "Unsupported content type"),
                                ("500", "The model failed"),
                                ("503", "Not ready or busy"),
                                ("504", "Timed out"),
                            )
                        },
                    },
                }
            },
            "/ping": {"get": {"summary": "Liveness", "responses": simple}},
            "/health": {"get": {"summary": "Liveness and reload status", "responses": simple}},
            "/ready": {
                "get": {
                    "summary": "200 once the model passed its smoke test",
                    "responses": {**simple, "503": {"description": "Not ready"}},
                }
            },
            "/version": {"get": {"summary": "What is being served", "responses": simple}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": simple}},
            "/v2": {
                "get": {
                    "summary": "Open Inference Protocol v2: server metadata",
                    "responses": simple,
                }
            },
            "/v2/health/live": {"get": {"responses": simple}},
            "/v2/health/ready": {"get": {"responses": simple}},
            "/v2/models/{name}": {"get": {"summary": "Model metadata", "responses": simple}},
            "/v2/models/{name}/ready": {"get": {"responses": simple}},
            "/v2/models/{name}/infer": {"post": {"summary": "Inference (v2)", "responses": simple}},
            "/v2/models/{name}/versions/{version}/infer": {"post": {"responses": simple}},
        },
        "components": {"schemas": {"Request": _input_schema(signature), "Error": error}},
    }
