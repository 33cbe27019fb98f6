//! The OpenAPI 3 document served at /openapi.json, built from the same
//! constants the validators use; schemathesis checks it against the
//! running service in tests.

use crate::api::{PAGE_MAX, USER_ID_MAX};
use crate::body::REFERENCE_MAX;
use crate::idempotency::KEY_MAX;
use crate::AMOUNT_MAX;
use serde_json::{json, Value};

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn ok(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn user_id() -> Value {
    json!({"name": "user_id", "in": "path", "required": true,
           "description": "The wallet's owner (the user id in their token's sub)",
           "schema": {"type": "string", "minLength": 1, "maxLength": USER_ID_MAX,
                      "pattern": "^[A-Za-z0-9._:@-]+$"}})
}

fn charge_id() -> Value {
    json!({"name": "charge_id", "in": "path", "required": true,
           "schema": {"type": "string", "pattern": "^ch_[0-9a-f]{32}$"}})
}

/// A money-moving POST: its key header, body and answers.
fn moving(op: &str, summary: &str, path_param: Value, body: &str, created: &str) -> Value {
    json!({
        "operationId": op,
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": [
            path_param,
            {"name": "Idempotency-Key", "in": "header", "required": true,
             "description": "Unique per intended movement; send the same key (and body) to retry it. A retry answers the first response with Idempotent-Replayed: true.",
             "schema": {"type": "string", "minLength": 1, "maxLength": KEY_MAX, "pattern": "^[!-~]+$"}}
        ],
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}
        },
        "responses": {
            "201": ok(created, "Movement"),
            "400": problem("Not JSON, or the Idempotency-Key header is missing or malformed"),
            "401": problem("No valid bearer token"),
            "403": problem("Not the caller's to do"),
            "404": problem("No such wallet or charge"),
            "409": problem("Insufficient funds (charges) or more than the charge (refunds)"),
            "415": problem("The body is not application/json"),
            "422": problem("A field breaks the rules, the currency is not the wallet's, or the Idempotency-Key was used for another request"),
            "503": problem("The database is not answering; retry with the same Idempotency-Key after Retry-After")
        }
    })
}

fn reading(op: &str, summary: &str, path_param: Value, schema: &str) -> Value {
    json!({
        "operationId": op,
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": [path_param],
        "responses": {
            "200": ok(summary, schema),
            "400": problem("A malformed path parameter"),
            "401": problem("No valid bearer token"),
            "403": problem("Not the caller's to see"),
            "404": problem("Not found"),
            "503": problem("The database is not answering")
        }
    })
}

pub fn document(max_top_up_minor: i64) -> String {
    let amount = |max: i64| json!({"type": "integer", "minimum": 1, "maximum": max});
    let currency =
        json!({"type": "string", "enum": kit::money::currency_codes().collect::<Vec<_>>()});
    let mut history = reading(
        "transactions",
        "A wallet's movements, newest first",
        user_id(),
        "Page",
    );
    history["parameters"] = json!([
        user_id(),
        {"name": "limit", "in": "query", "required": false,
         "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX}},
        {"name": "after", "in": "query", "required": false,
         "description": "The previous page's next_after",
         "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}}
    ]);
    let doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "eshop payments",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Wallets on a double-entry ledger. Amounts are integer minor units of an ISO 4217 currency. Tokens are the users service's EdDSA JWTs. A wallet's owner reads it, tops it up and pays from it; role service (the shop) reads, charges and refunds; role admin does everything."
        },
        "paths": {
            "/wallets/{user_id}": {"get": reading("wallet", "A wallet's balance", user_id(), "Wallet")},
            "/wallets/{user_id}/top-ups": {"post": moving(
                "top_up", "Add money (the first top-up creates the wallet in its currency)",
                user_id(), "TopUp", "The top-up")},
            "/wallets/{user_id}/charges": {"post": moving(
                "charge", "Pay from the wallet", user_id(), "Charge", "The charge")},
            "/wallets/{user_id}/transactions": {"get": history},
            "/charges/{charge_id}": {"get": reading("get_charge", "A charge", charge_id(), "Movement")},
            "/charges/{charge_id}/refunds": {"post": moving(
                "refund", "Give back some or all of a charge (role service or admin)",
                charge_id(), "Refund", "The refund")}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "TopUp": {
                    "type": "object", "additionalProperties": false,
                    "required": ["amount_minor", "currency"],
                    "properties": {"amount_minor": amount(max_top_up_minor), "currency": currency}
                },
                "Charge": {
                    "type": "object", "additionalProperties": false,
                    "required": ["amount_minor", "currency", "reference"],
                    "properties": {
                        "amount_minor": amount(AMOUNT_MAX),
                        "currency": currency,
                        "reference": {"type": "string", "minLength": 1, "maxLength": REFERENCE_MAX,
                                      "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
                                      "description": "The order or checkout paid for"}
                    }
                },
                "Refund": {
                    "type": "object", "additionalProperties": false,
                    "required": ["amount_minor"],
                    "properties": {"amount_minor": amount(AMOUNT_MAX)}
                },
                "Wallet": {
                    "type": "object",
                    "required": ["user_id", "currency", "balance_minor", "balance"],
                    "properties": {
                        "user_id": {"type": "string"},
                        "currency": {"type": "string"},
                        "balance_minor": {"type": "integer", "minimum": 0},
                        "balance": {"type": "string", "description": "The balance in the currency's precision, e.g. 12.34"}
                    }
                },
                "Movement": {
                    "type": "object",
                    "required": ["id", "kind", "user_id", "amount_minor", "currency", "reference",
                                 "charge_id", "refunded_minor", "balance_after_minor", "created_at"],
                    "properties": {
                        "id": {"type": "string"},
                        "kind": {"type": "string", "enum": ["top_up", "charge", "refund"]},
                        "user_id": {"type": "string"},
                        "amount_minor": {"type": "integer", "minimum": 1},
                        "currency": {"type": "string"},
                        "reference": {"type": "string", "nullable": true},
                        "charge_id": {"type": "string", "nullable": true},
                        "refunded_minor": {"type": "integer", "minimum": 0, "nullable": true},
                        "balance_after_minor": {"type": "integer", "minimum": 0},
                        "created_at": {"type": "string", "format": "date-time"}
                    }
                },
                "Page": {
                    "type": "object",
                    "required": ["items", "next_after"],
                    "properties": {
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Movement"}},
                        "next_after": {"type": "string", "nullable": true}
                    }
                },
                "Problem": kit::problem::schema()
            }
        }
    });
    doc.to_string()
}
