//! The OpenAPI 3 document served at /openapi.json.

use serde_json::{json, Value};

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn price_responses() -> Value {
    json!({
        "200": {
            "description": "The price of the order",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Quote"}}}
        },
        "400": problem("Malformed product id or request"),
        "404": problem("No product with this id"),
        "413": problem("Body too large"),
        "415": problem("Body is not JSON"),
        "422": problem("Quantity missing, not a whole number, or out of range"),
        "503": unavailable()
    })
}

fn unavailable() -> Value {
    json!({
        "description": "Inventory is down or slow; try again later",
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

pub fn document(max_quantity: i64) -> String {
    let id = json!({"type": "string", "minLength": 1, "maxLength": crate::api::ID_MAX, "pattern": kit::ids::ID_PATTERN});
    let quantity =
        json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": max_quantity});
    let mut get_responses = price_responses();
    // A GET has no body, so no 413/415.
    if let Some(o) = get_responses.as_object_mut() {
        o.remove("413");
        o.remove("415");
    }
    let doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "eshop pricing",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "calculate_price: unit price × quantity, volume discount, tax, total, in integer minor units. Rounding: half-to-even per line."
        },
        "paths": {
            "/": {
                "get": {
                    "operationId": "landing_page",
                    "summary": "The landing page; with both parameters it also shows the price",
                    "parameters": [
                        {"name": "product_id", "in": "query", "required": false, "schema": {"type": "string"}},
                        {"name": "quantity", "in": "query", "required": false, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}},
                        "400": {"description": "The page, explaining the bad product id", "content": {"text/html": {"schema": {"type": "string"}}}},
                        "404": {"description": "The page, saying the product does not exist", "content": {"text/html": {"schema": {"type": "string"}}}},
                        "422": {"description": "The page, explaining the bad quantity", "content": {"text/html": {"schema": {"type": "string"}}}},
                        "503": {"description": "The page, saying inventory is unavailable", "content": {"text/html": {"schema": {"type": "string"}}}}
                    }
                }
            },
            "/calculate_price": {
                "get": {
                    "operationId": "calculate_price",
                    "parameters": [
                        {"name": "product_id", "in": "query", "required": true, "schema": id},
                        {"name": "quantity", "in": "query", "required": true, "schema": quantity}
                    ],
                    "responses": get_responses
                },
                "post": {
                    "operationId": "calculate_price_json",
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["product_id", "quantity"],
                            "properties": {"product_id": id, "quantity": quantity}
                        }}}
                    },
                    "responses": price_responses()
                }
            },
            "/quote": {
                "post": {
                    "operationId": "quote",
                    "summary": "Prices many products at once (a cart): each line as calculate_price prices it, and their sums",
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["items"],
                            "properties": {"items": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": crate::basket::LINES_MAX,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": false,
                                    "required": ["product_id", "quantity"],
                                    "properties": {"product_id": id, "quantity": quantity}
                                }
                            }}
                        }}}
                    },
                    "responses": {
                        "200": {
                            "description": "The basket's lines and totals, in one currency",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Basket"}}}
                        },
                        "400": problem("Malformed JSON"),
                        "404": problem("Products with these ids do not exist (all named)"),
                        "413": problem("Body too large"),
                        "415": problem("Body is not JSON"),
                        "422": problem("Bad lines (each named), a product listed twice, or products in different currencies"),
                        "503": unavailable()
                    }
                }
            }
        },
        "components": {
            "schemas": {
                "Quote": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["product_id", "product_name", "currency", "minor_unit_exponent", "unit_price_minor", "quantity",
                                 "subtotal_minor", "discount_percent", "discount_minor", "tax_percent", "tax_minor", "total_minor", "availability"],
                    "properties": {
                        "product_id": {"type": "string"},
                        "product_name": {"type": "string"},
                        "currency": {"type": "string", "description": "ISO 4217"},
                        "minor_unit_exponent": {"type": "integer", "minimum": 0, "maximum": 4},
                        "unit_price_minor": {"type": "integer", "format": "int64", "minimum": 0},
                        "quantity": {"type": "integer", "format": "int64", "minimum": 1},
                        "subtotal_minor": {"type": "integer", "format": "int64", "minimum": 0},
                        "discount_percent": {"type": "string"},
                        "discount_minor": {"type": "integer", "format": "int64", "minimum": 0},
                        "tax_percent": {"type": "string"},
                        "tax_minor": {"type": "integer", "format": "int64", "minimum": 0},
                        "total_minor": {"type": "integer", "format": "int64", "minimum": 0},
                        "availability": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["status", "available", "message"],
                            "properties": {
                                "status": {"type": "string", "enum": ["in_stock", "low_stock", "insufficient", "out_of_stock"]},
                                "available": {"type": "integer", "format": "int64", "minimum": 0},
                                "message": {"type": "string"}
                            }
                        }
                    }
                },
                "Basket": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["currency", "minor_unit_exponent", "lines", "subtotal_minor", "discount_minor", "tax_minor", "total_minor"],
                    "properties": {
                        "currency": {"type": "string", "description": "ISO 4217; every line's"},
                        "minor_unit_exponent": {"type": "integer", "minimum": 0, "maximum": 4},
                        "lines": {"type": "array", "items": {"$ref": "#/components/schemas/Quote"}},
                        "subtotal_minor": {"type": "integer", "format": "int64", "minimum": 0},
                        "discount_minor": {"type": "integer", "format": "int64", "minimum": 0},
                        "tax_minor": {"type": "integer", "format": "int64", "minimum": 0},
                        "total_minor": {"type": "integer", "format": "int64", "minimum": 0}
                    }
                },
                "Problem": kit::problem::schema()
            }
        }
    });
    serde_json::to_string_pretty(&doc).expect("a json! value serialises")
}
