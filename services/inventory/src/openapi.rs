//! The OpenAPI 3 document served at /openapi.json.
//!
//! Built from the same constants the validators use, so the document's
//! limits cannot drift from the server's; schemathesis checks the rest
//! (every route, status and body) against the running service in tests.

use crate::model::*;
use crate::reservation::{ITEMS_MAX, TTL_DEFAULT_SECS, TTL_MAX_SECS};
use serde_json::{json, Value};

/// Control characters (Unicode Cc) are refused in names; descriptions also
/// allow tab, newline and carriage return.
const NAME_PATTERN: &str =
    "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";
const DESCRIPTION_PATTERN: &str =
    "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$";
/// Empty, `*`, or a comma-separated list of entity tags (RFC 9110).
const IF_MATCH_PATTERN: &str = "^(|\\*|(W/)?\"[!#-~]*\"([ \\t]*,[ \\t]*(W/)?\"[!#-~]*\")*)$";
use kit::ids::ID_PATTERN;

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn ok(description: &str, schema: &str, etag: bool) -> Value {
    let mut v = json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    });
    if etag {
        v["headers"] = json!({"ETag": {"$ref": "#/components/headers/ETag"}});
    }
    v
}

fn body(schema: &str) -> Value {
    json!({
        "required": true,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

pub fn document() -> String {
    let currencies: Vec<&str> = kit::money::currency_codes().collect();
    let held = json!({"type": "integer", "format": "int64", "minimum": 0,
                      "description": "Units open reservations hold (never above quantity)"});
    let available = json!({"type": "integer", "format": "int64", "minimum": 0,
                           "description": "quantity - held: what a new hold can take"});
    let id_param = json!({"$ref": "#/components/parameters/ProductId"});
    let if_match = json!({"$ref": "#/components/parameters/IfMatch"});
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "eshop inventory",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Products, stock and prices. Money is in integer minor units with an ISO 4217 currency. Writes honour If-Match (ETag = version). Reservations hold stock for a checkout: all of a hold's items or none, until it is committed (sold), released, or expires."
        },
        "paths": {
            "/products": {
                "post": {
                    "operationId": "add_product",
                    "summary": "Add a product",
                    "requestBody": body("NewProduct"),
                    "responses": {
                        "201": {
                            "description": "Created",
                            "headers": {
                                "ETag": {"$ref": "#/components/headers/ETag"},
                                "Location": {"schema": {"type": "string"}, "description": "URL of the new product"}
                            },
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Product"}}}
                        },
                        "400": problem("Malformed JSON"),
                        "409": problem("A product with this id exists"),
                        "413": problem("Body too large"),
                        "415": problem("Body is not JSON"),
                        "422": problem("Invalid field values"),
                        "503": problem("Database unavailable")
                    }
                },
                "get": {
                    "operationId": "list_products",
                    "summary": "List products in id order, a page at a time",
                    "parameters": [
                        {"name": "limit", "in": "query", "required": false,
                         "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT}},
                        {"name": "after", "in": "query", "required": false,
                         "description": "Return products whose id sorts after this one (the previous page's next_after)",
                         "schema": {"type": "string", "minLength": 1, "maxLength": ID_MAX, "pattern": ID_PATTERN}}
                    ],
                    "responses": {
                        "200": ok("A page of products", "Page", false),
                        "400": problem("Bad limit or cursor"),
                        "503": problem("Database unavailable")
                    }
                }
            },
            "/products/{id}": {
                "parameters": [id_param],
                "get": {
                    "operationId": "get_product",
                    "responses": {
                        "200": ok("The product", "Product", true),
                        "400": problem("Malformed id"),
                        "404": problem("No such product"),
                        "503": problem("Database unavailable")
                    }
                },
                "patch": {
                    "operationId": "update_product",
                    "summary": "Change some fields of a product",
                    "parameters": [if_match],
                    "requestBody": body("ProductChanges"),
                    "responses": {
                        "200": ok("The updated product", "Product", true),
                        "400": problem("Malformed id, JSON or If-Match"),
                        "404": problem("No such product"),
                        "409": problem("The quantity would be below the units held (type stock-held)"),
                        "412": problem("If-Match does not match the current version"),
                        "413": problem("Body too large"),
                        "415": problem("Body is not JSON"),
                        "422": problem("Invalid field values"),
                        "503": problem("Database unavailable")
                    }
                },
                "delete": {
                    "operationId": "delete_product",
                    "parameters": [if_match],
                    "responses": {
                        "204": {"description": "Deleted"},
                        "400": problem("Malformed id or If-Match"),
                        "404": problem("No such product"),
                        "409": problem("Open reservations hold units of this product (type stock-held)"),
                        "412": problem("If-Match does not match the current version"),
                        "503": problem("Database unavailable")
                    }
                }
            },
            "/products/{id}/quantity": {
                "parameters": [id_param],
                "get": {
                    "operationId": "get_quantity",
                    "responses": {
                        "200": ok("Stock on hand", "Quantity", true),
                        "400": problem("Malformed id"),
                        "404": problem("No such product"),
                        "503": problem("Database unavailable")
                    }
                },
                "put": {
                    "operationId": "set_quantity",
                    "summary": "Set the stock on hand (use If-Match to avoid overwriting a concurrent change)",
                    "parameters": [if_match],
                    "requestBody": body("SetQuantity"),
                    "responses": {
                        "200": ok("Stock on hand", "Quantity", true),
                        "400": problem("Malformed id, JSON or If-Match"),
                        "404": problem("No such product"),
                        "409": problem("The quantity would be below the units held (type stock-held)"),
                        "412": problem("If-Match does not match the current version"),
                        "413": problem("Body too large"),
                        "415": problem("Body is not JSON"),
                        "422": problem("Invalid quantity"),
                        "503": problem("Database unavailable")
                    }
                }
            },
            "/products/{id}/quantity/adjustments": {
                "parameters": [id_param],
                "post": {
                    "operationId": "adjust_quantity",
                    "summary": "Add (or, with a negative delta, take) stock atomically",
                    "requestBody": body("AdjustQuantity"),
                    "responses": {
                        "200": ok("Stock on hand after the change", "Quantity", true),
                        "400": problem("Malformed id or JSON"),
                        "404": problem("No such product"),
                        "409": problem("Stock would leave held..max"),
                        "413": problem("Body too large"),
                        "415": problem("Body is not JSON"),
                        "422": problem("Invalid delta"),
                        "503": problem("Database unavailable")
                    }
                }
            },
            "/products/{id}/price": {
                "parameters": [id_param],
                "get": {
                    "operationId": "get_price",
                    "responses": {
                        "200": ok("Unit price", "Price", false),
                        "400": problem("Malformed id"),
                        "404": problem("No such product"),
                        "503": problem("Database unavailable")
                    }
                }
            }
        },
        "components": {
            "parameters": {
                "ProductId": {
                    "name": "id", "in": "path", "required": true,
                    "description": "The product's SKU",
                    "schema": {"type": "string", "minLength": 1, "maxLength": ID_MAX, "pattern": ID_PATTERN}
                },
                "ReservationId": {
                    "name": "id", "in": "path", "required": true,
                    "description": "The reservation's id (the client's own, or the one the service minted)",
                    "schema": {"type": "string", "minLength": 1, "maxLength": ID_MAX, "pattern": ID_PATTERN}
                },
                "IfMatch": {
                    "name": "If-Match", "in": "header", "required": false,
                    "description": "Only change the product if its ETag is one of these (or *); a stale tag gets 412",
                    "schema": {"type": "string", "pattern": IF_MATCH_PATTERN}
                }
            },
            "headers": {
                "ETag": {"description": "The product's version, quoted", "schema": {"type": "string"}}
            },
            "schemas": {
                "Product": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["id", "name", "description", "unit_price_minor", "currency", "quantity", "held", "available", "version", "created_at", "updated_at"],
                    "properties": {
                        "id": {"type": "string"},
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "unit_price_minor": {"type": "integer", "format": "int64", "minimum": 0},
                        "currency": {"type": "string"},
                        "quantity": {"type": "integer", "format": "int64", "minimum": 0, "description": "Units on hand, held ones included"},
                        "held": held.clone(),
                        "available": available.clone(),
                        "version": {"type": "integer", "format": "int64", "minimum": 1},
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"}
                    }
                },
                "NewProduct": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["id", "name", "unit_price_minor", "currency"],
                    "properties": {
                        "id": {"type": "string", "minLength": 1, "maxLength": ID_MAX, "pattern": ID_PATTERN},
                        "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX, "pattern": NAME_PATTERN},
                        "description": {"type": "string", "maxLength": DESCRIPTION_MAX, "pattern": DESCRIPTION_PATTERN, "default": ""},
                        "unit_price_minor": {"type": "integer", "format": "int64", "minimum": 0, "maximum": PRICE_MAX,
                                             "description": "Unit price in the currency's minor unit (cents for EUR)"},
                        "currency": {"type": "string", "enum": currencies},
                        "quantity": {"type": "integer", "format": "int64", "minimum": 0, "maximum": QUANTITY_MAX, "default": 0}
                    }
                },
                "ProductChanges": {
                    "type": "object",
                    "additionalProperties": false,
                    "minProperties": 1,
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX, "pattern": NAME_PATTERN},
                        "description": {"type": "string", "maxLength": DESCRIPTION_MAX, "pattern": DESCRIPTION_PATTERN},
                        "unit_price_minor": {"type": "integer", "format": "int64", "minimum": 0, "maximum": PRICE_MAX},
                        "currency": {"type": "string", "enum": currencies},
                        "quantity": {"type": "integer", "format": "int64", "minimum": 0, "maximum": QUANTITY_MAX}
                    }
                },
                "SetQuantity": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["quantity"],
                    "properties": {"quantity": {"type": "integer", "format": "int64", "minimum": 0, "maximum": QUANTITY_MAX}}
                },
                "AdjustQuantity": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["delta"],
                    "properties": {"delta": {"type": "integer", "format": "int64", "minimum": -QUANTITY_MAX, "maximum": QUANTITY_MAX}}
                },
                "Quantity": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["id", "quantity", "held", "available", "version"],
                    "properties": {
                        "id": {"type": "string"},
                        "quantity": {"type": "integer", "format": "int64", "minimum": 0},
                        "held": held,
                        "available": available,
                        "version": {"type": "integer", "format": "int64"}
                    }
                },
                "Price": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["id", "unit_price_minor", "currency"],
                    "properties": {
                        "id": {"type": "string"},
                        "unit_price_minor": {"type": "integer", "format": "int64", "minimum": 0},
                        "currency": {"type": "string"}
                    }
                },
                "Page": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["items", "next_after"],
                    "properties": {
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Product"}},
                        "next_after": {"type": "string", "nullable": true}
                    }
                },
                "Problem": kit::problem::schema()
            }
        }
    });
    // The reservations' paths and schemas, built apart to keep this readable.
    merge(&mut doc["paths"], reservation_paths());
    merge(&mut doc["components"]["schemas"], reservation_schemas());
    secure(&mut doc);
    serde_json::to_string_pretty(&doc).expect("a json! value serialises")
}

/// Changing the catalogue or the stock needs an admin's token; holding
/// stock a signed-in caller's (api.rs). Said once here for every such
/// operation: the scheme, and the 401/403 answers.
const ADMIN_ONLY: [&str; 5] = [
    "add_product",
    "update_product",
    "delete_product",
    "set_quantity",
    "adjust_quantity",
];
const SIGNED_IN: [&str; 3] = ["hold_stock", "commit_reservation", "release_reservation"];

fn secure(doc: &mut Value) {
    doc["components"]["securitySchemes"] =
        json!({"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}});
    for path in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for op in path
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            let admin = ADMIN_ONLY.contains(&id.as_str());
            if !admin && !SIGNED_IN.contains(&id.as_str()) {
                continue;
            }
            op["security"] = json!([{"bearer": []}]);
            op["responses"]["401"] = problem("No valid bearer token");
            if admin {
                op["responses"]["403"] = problem("The token has no admin role");
            }
        }
    }
}

fn hold_operation() -> Value {
    json!({
        "operationId": "hold_stock",
        "summary": "Hold stock for a checkout: every item or none",
        "requestBody": body("NewReservation"),
        "responses": {
            "201": {
                "description": "Held",
                "headers": {"Location": {"schema": {"type": "string"}, "description": "URL of the reservation"}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Reservation"}}},
                "links": {
                    "GetReservation": link("get_reservation"),
                    "CommitReservation": link("commit_reservation"),
                    "ReleaseReservation": link("release_reservation")
                }
            },
            "200": ok("A retry: the reservation with this id and these items, as it is now", "Reservation", false),
            "400": problem("Malformed JSON"),
            "404": problem("Products that do not exist (all named); nothing was held"),
            "409": {
                "description": "Not enough available of some products (type insufficient-stock); nothing was held",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/StockProblem"}}}
            },
            "413": problem("Body too large"),
            "415": problem("Body is not JSON"),
            "422": problem("Invalid items or TTL, a product listed twice, or an existing id with other items"),
            "503": problem("Database unavailable or too contended; retry")
        }
    })
}

/// What a client does next with a new hold (schemathesis follows these).
fn link(operation: &str) -> Value {
    json!({"operationId": operation, "parameters": {"id": "$response.body#/id"}})
}

fn finish_operation(id: &str, summary: &str, conflict: &str) -> Value {
    json!({
        "operationId": id,
        "summary": summary,
        "responses": {
            "200": ok("The reservation after the change", "Reservation", false),
            "400": problem("Malformed id"),
            "404": problem("No such reservation"),
            "409": problem(&format!("{conflict} (type reservation-not-held)")),
            "503": problem("Database unavailable or too contended; retry")
        }
    })
}

fn merge(into: &mut Value, more: Value) {
    if let (Some(into), Value::Object(more)) = (into.as_object_mut(), more) {
        into.extend(more);
    }
}

fn reservation_paths() -> Value {
    let reservation_param = json!({"$ref": "#/components/parameters/ReservationId"});
    json!({
        "/reservations": {"post": hold_operation()},
        "/reservations/{id}": {
            "parameters": [reservation_param.clone()],
            "get": {
                "operationId": "get_reservation",
                "responses": {
                    "200": ok("The reservation", "Reservation", false),
                    "400": problem("Malformed id"),
                    "404": problem("No such reservation"),
                    "503": problem("Database unavailable")
                }
            }
        },
        "/reservations/{id}/commit": {
            "parameters": [reservation_param.clone()],
            "post": finish_operation(
                "commit_reservation",
                "Sell the held units: stock on hand and held both drop by each item. Idempotent on a committed reservation.",
                "Released or expired (a hold past its TTL expires here, and its units go back)"
            )
        },
        "/reservations/{id}/release": {
            "parameters": [reservation_param],
            "post": finish_operation(
                "release_reservation",
                "Give the held units back. Idempotent on a released or expired reservation.",
                "Already committed"
            )
        }
    })
}

fn reservation_schemas() -> Value {
    json!({
        "ReservationItem": {
            "type": "object",
            "additionalProperties": false,
            "required": ["product_id", "quantity"],
            "properties": {
                "product_id": {"type": "string", "minLength": 1, "maxLength": ID_MAX, "pattern": ID_PATTERN},
                "quantity": {"type": "integer", "format": "int64", "minimum": 1, "maximum": QUANTITY_MAX}
            }
        },
        "NewReservation": {
            "type": "object",
            "additionalProperties": false,
            "required": ["items"],
            "properties": {
                "id": {"type": "string", "minLength": 1, "maxLength": ID_MAX, "pattern": ID_PATTERN,
                       "description": "Your own id, so a retry finds the first attempt; minted when absent"},
                "items": {"type": "array", "minItems": 1, "maxItems": ITEMS_MAX,
                          "description": "Each product at most once",
                          "items": {"$ref": "#/components/schemas/ReservationItem"}},
                "ttl_secs": {"type": "integer", "format": "int64", "minimum": 1, "maximum": TTL_MAX_SECS,
                             "default": TTL_DEFAULT_SECS,
                             "description": "Seconds until an unfinished hold expires and its units go back"}
            }
        },
        "Reservation": {
            "type": "object",
            "additionalProperties": false,
            "required": ["id", "state", "items", "expires_at", "created_at", "updated_at"],
            "properties": {
                "id": {"type": "string"},
                "state": {"type": "string", "enum": ["held", "committed", "released", "expired"]},
                "items": {"type": "array", "description": "In product id order",
                          "items": {"$ref": "#/components/schemas/ReservationItem"}},
                "expires_at": {"type": "string", "format": "date-time"},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"}
            }
        },
        "StockProblem": {
            "allOf": [
                {"$ref": "#/components/schemas/Problem"},
                {
                    "type": "object",
                    "required": ["shortages"],
                    "properties": {
                        "shortages": {
                            "type": "array",
                            "description": "Every product the hold could not get, with what it has",
                            "items": {
                                "type": "object",
                                "required": ["product_id", "requested", "available"],
                                "properties": {
                                    "product_id": {"type": "string"},
                                    "requested": {"type": "integer", "format": "int64"},
                                    "available": {"type": "integer", "format": "int64"}
                                }
                            }
                        }
                    }
                }
            ]
        }
    })
}
