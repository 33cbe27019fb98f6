//! The OpenAPI 3 document served at /openapi.json, built from the same
//! constants the validators use; schemathesis checks it against the
//! running service (in front of the real shop) in tests.

use crate::model::{Reason, KEY_MAX, PAGE_MAX, PRODUCT_ID_MAX, PRODUCT_ID_PATTERN, QUANTITY_MAX};
use serde_json::{json, Value};

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn failed(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/CheckoutFailed"}}}
    })
}

fn ok(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn with_location(mut response: Value) -> Value {
    response["headers"] = json!({"Location": {"schema": {"type": "string"},
        "description": "The order: /orders/{order_id}"}});
    response
}

/// Every operation needs a bearer token from the users service.
fn operation(id: &str, summary: &str, parameters: Value, responses: Value) -> Value {
    let mut r = responses;
    r["401"] = problem("No valid bearer token");
    r["503"] = problem("The database, or the service that checks tokens, is not answering");
    json!({
        "operationId": id,
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": parameters,
        "responses": r
    })
}

fn money() -> Value {
    json!({"type": "integer", "format": "int64", "nullable": true,
           "description": "Minor units of currency; null until priced"})
}

fn schemas() -> Value {
    let product_id = json!({"type": "string", "minLength": 1, "maxLength": PRODUCT_ID_MAX,
                            "pattern": PRODUCT_ID_PATTERN});
    let quantity = json!({"type": "integer", "minimum": 1, "maximum": QUANTITY_MAX});
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    json!({
        "SetQuantity": {
            "type": "object", "additionalProperties": false, "required": ["quantity"],
            "properties": {"quantity": quantity}
        },
        "CartLineSet": {
            "type": "object", "required": ["product_id", "quantity"],
            "properties": {"product_id": product_id, "quantity": quantity}
        },
        "CartLine": {
            "type": "object",
            "required": ["product_id", "quantity", "product_name", "unit_price_minor",
                         "line_total_minor", "availability"],
            "properties": {
                "product_id": product_id,
                "quantity": quantity,
                "product_name": {"type": "string", "nullable": true},
                "unit_price_minor": money(),
                "line_total_minor": money(),
                "availability": {
                    "type": "object", "nullable": true,
                    "description": "pricing's word on the stock: status, available, message",
                    "properties": {
                        "status": {"type": "string", "enum": ["in_stock", "low_stock", "insufficient", "out_of_stock"]},
                        "available": {"type": "integer", "minimum": 0},
                        "message": {"type": "string"}
                    }
                }
            }
        },
        "Cart": {
            "type": "object",
            "required": ["items", "currency", "subtotal_minor", "discount_minor", "tax_minor",
                         "total_minor", "prices_unavailable", "notice"],
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/CartLine"}},
                "currency": {"type": "string", "nullable": true},
                "subtotal_minor": money(),
                "discount_minor": money(),
                "tax_minor": money(),
                "total_minor": money(),
                "prices_unavailable": {"type": "boolean",
                    "description": "The lines are shown without prices: pricing could not price them now"},
                "notice": {"type": "string", "nullable": true, "description": "Why, in words"}
            }
        },
        "OrderLine": {
            "type": "object",
            "required": ["product_id", "product_name", "quantity", "unit_price_minor", "line_total_minor"],
            "properties": {
                "product_id": product_id,
                "product_name": {"type": "string", "nullable": true},
                "quantity": quantity,
                "unit_price_minor": money(),
                "line_total_minor": money()
            }
        },
        "Order": {
            "type": "object",
            "required": ["id", "state", "reason", "message", "lines", "currency", "subtotal_minor",
                         "discount_minor", "tax_minor", "total_minor", "created_at", "updated_at"],
            "properties": {
                "id": {"type": "string", "pattern": "^o_[0-9a-f]{32}$"},
                "state": {"type": "string", "enum": ["pending", "confirmed", "failed"]},
                "reason": {"type": "string", "nullable": true, "enum": reasons},
                "message": {"type": "string", "nullable": true},
                "lines": {"type": "array", "items": {"$ref": "#/components/schemas/OrderLine"}},
                "currency": {"type": "string", "nullable": true},
                "subtotal_minor": money(),
                "discount_minor": money(),
                "tax_minor": money(),
                "total_minor": money(),
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"}
            }
        },
        "Page": {
            "type": "object", "required": ["items", "next_after"],
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}},
                "next_after": {"type": "string", "nullable": true}
            }
        },
        "Problem": kit::problem::schema(),
        "CheckoutFailed": {
            "allOf": [
                {"$ref": "#/components/schemas/Problem"},
                {
                    "type": "object", "required": ["reason", "order"],
                    "properties": {
                        "reason": {"type": "string", "enum": reasons},
                        "order": {"$ref": "#/components/schemas/Order"}
                    }
                }
            ]
        }
    })
}

fn paths() -> Value {
    let product_id = json!([{"name": "product_id", "in": "path", "required": true,
        "schema": {"type": "string", "minLength": 1, "maxLength": PRODUCT_ID_MAX, "pattern": PRODUCT_ID_PATTERN}}]);
    let key = json!([{"name": "Idempotency-Key", "in": "header", "required": true,
        "description": "Names the checkout: send the same key to retry it (the same order comes back), a new one for a new checkout",
        "schema": {"type": "string", "minLength": 1, "maxLength": KEY_MAX, "pattern": "^[!-~]+$"}}]);
    let page = json!([
        {"name": "limit", "in": "query", "required": false,
         "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX}},
        {"name": "after", "in": "query", "required": false,
         "description": "The previous page's next_after",
         "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}}
    ]);
    let order_id = json!([{"name": "order_id", "in": "path", "required": true,
        "schema": {"type": "string"}}]);
    let mut put_item = operation(
        "set_cart_item",
        "Set a cart line's quantity (not add to it)",
        product_id.clone(),
        json!({
            "200": ok("The line, changed", "CartLineSet"),
            "201": ok("The line, new", "CartLineSet"),
            "400": problem("Not JSON, or a malformed product id"),
            "404": problem("The shop has no such product"),
            "409": problem("The cart already holds the most products it may"),
            "413": problem("The body is too large"),
            "415": problem("The body is not application/json"),
            "422": problem("The quantity breaks the rules (the field is named)")
        }),
    );
    put_item["requestBody"] = json!({"required": true,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SetQuantity"}}}});
    json!({
        "/cart": {"get": operation("cart", "The caller's cart with live prices", json!([]),
            json!({"200": ok("The cart; without prices (and saying why) when pricing cannot price it", "Cart")}))},
        "/cart/items/{product_id}": {
            "put": put_item,
            "delete": operation("remove_cart_item", "Remove a cart line (whether or not it is there)",
                product_id, json!({
                    "204": {"description": "Removed"},
                    "400": problem("A malformed product id")
                }))
        },
        "/checkouts": {"post": operation("checkout",
            "Check the cart out: hold the stock, price it, charge the wallet, make the order",
            key, json!({
                "201": with_location(ok("The order, confirmed", "Order")),
                "202": with_location(ok("The order, pending: its outcome is not known yet; poll it", "Order")),
                "400": problem("The Idempotency-Key header is missing or malformed"),
                "402": failed("Failed: not enough money in the wallet, or no wallet"),
                "409": failed("Failed: out of stock, a product no longer sold, or the hold ran out"),
                "422": problem("The cart is empty, or the key was used to check out another cart; or failed: mixed currencies, a wallet in another currency"),
                "502": failed("Failed: a service refused unexpectedly")
            }))},
        "/orders": {"get": operation("orders", "The caller's orders, newest first", page,
            json!({"200": ok("A page of orders", "Page"),
                   "400": problem("A malformed limit or after")}))},
        "/orders/{order_id}": {"get": operation("order", "One of the caller's orders", order_id,
            json!({"200": ok("The order", "Order"),
                   "404": problem("No such order of the caller's")}))}
    })
}

pub fn document() -> String {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "eshop orders",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A cart per signed-in user and the checkout saga that makes it an order: stock held (inventory), priced (pricing), the wallet charged (payments), the hold committed; what was done is undone when a step is refused. Amounts are integer minor units. Tokens are the users service's EdDSA JWTs; everything is the caller's own."
        },
        "paths": paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": schemas()
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_json_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            [
                "/cart",
                "/cart/items/{product_id}",
                "/checkouts",
                "/orders",
                "/orders/{order_id}"
            ]
        );
        assert_eq!(
            doc["components"]["schemas"]["SetQuantity"]["properties"]["quantity"]["maximum"],
            1000
        );
    }
}
