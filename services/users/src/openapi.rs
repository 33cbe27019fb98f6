//! The OpenAPI 3 document served at /openapi.json, built from the same
//! constants the validators use; schemathesis checks it against the
//! running service in tests.

use crate::password::{EMAIL_MAX, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS};
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

fn role_change(op: &str, summary: &str) -> Value {
    json!({
        "operationId": op,
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": [
            {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
            {"name": "role", "in": "path", "required": true, "schema": {"type": "string"}}
        ],
        "responses": {
            "200": ok("The account with its roles", "User"),
            "401": problem("No valid bearer token"),
            "403": problem("The caller is not an admin"),
            "404": problem("No such user or role"),
            "503": problem("The database is not answering")
        }
    })
}

pub fn document() -> String {
    let credentials = json!({
        "required": true,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Credentials"}}}
    });
    let doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "eshop users",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Accounts and access tokens. Tokens are EdDSA (Ed25519) JWTs with sub, aud, iat, exp, roles and a kid; their public keys are at /.well-known/jwks.json."
        },
        "paths": {
            "/users": {"post": {
                "operationId": "sign_up",
                "summary": "Create an account",
                "requestBody": credentials,
                "responses": {
                    "201": ok("The new account", "User"),
                    "400": problem("The body is not JSON"),
                    "409": problem("An account with this email exists"),
                    "415": problem("The body is not application/json"),
                    "422": problem("The email or the password breaks the rules"),
                    "503": problem("Busy or the database is not answering; retry")
                }
            }},
            "/tokens": {"post": {
                "operationId": "login",
                "summary": "Log in: an access token for an email and password",
                "requestBody": credentials,
                "responses": {
                    "200": ok("An access token", "Token"),
                    "400": problem("The body is not JSON"),
                    "401": problem("Invalid email or password (one answer for both)"),
                    "415": problem("The body is not application/json"),
                    "422": problem("The body has the wrong shape"),
                    "429": problem("Too many attempts for this account or from this address; see Retry-After"),
                    "503": problem("Busy or the database is not answering; retry")
                }
            }},
            "/service-tokens": {"post": {
                "operationId": "service_token",
                "summary": "A token with the role service for one of the shop's services (client credentials, HTTP Basic)",
                "security": [{"client": []}],
                "responses": {
                    "200": ok("An access token", "Token"),
                    "401": problem("Unknown client or wrong secret"),
                    "429": problem("Too many failed attempts from this address; see Retry-After"),
                    "503": problem("Busy; retry")
                }
            }},
            "/me": {"get": {
                "operationId": "me",
                "summary": "The caller's account",
                "security": [{"bearer": []}],
                "responses": {
                    "200": ok("The account", "User"),
                    "401": problem("No valid bearer token"),
                    "404": problem("The account no longer exists"),
                    "503": problem("The database is not answering")
                }
            }},
            "/users/{id}/roles/{role}": {
                "put": role_change("grant_role", "Grant a role (admins only)"),
                "delete": role_change("revoke_role", "Revoke a role (admins only)")
            },
            "/.well-known/jwks.json": {"get": {
                "operationId": "jwks",
                "summary": "The public keys tokens are signed with (RFC 7517, RFC 8037)",
                "responses": {"200": ok("The key set", "Jwks")}
            }}
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "client": {"type": "http", "scheme": "basic"}
            },
            "schemas": {
                "Credentials": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["email", "password"],
                    "properties": {
                        "email": {"type": "string", "format": "email", "maxLength": EMAIL_MAX},
                        "password": {"type": "string", "minLength": PASSWORD_MIN_CHARS, "maxLength": PASSWORD_MAX_CHARS}
                    }
                },
                "User": {
                    "type": "object",
                    "required": ["id", "email", "roles", "created_at"],
                    "properties": {
                        "id": {"type": "string"},
                        "email": {"type": "string"},
                        "roles": {"type": "array", "items": {"type": "string"}},
                        "created_at": {"type": "string", "format": "date-time"}
                    }
                },
                "Token": {
                    "type": "object",
                    "required": ["access_token", "token_type", "expires_in"],
                    "properties": {
                        "access_token": {"type": "string"},
                        "token_type": {"type": "string", "enum": ["Bearer"]},
                        "expires_in": {"type": "integer", "minimum": 1}
                    }
                },
                "Jwks": {
                    "type": "object",
                    "required": ["keys"],
                    "properties": {"keys": {"type": "array", "items": {
                        "type": "object",
                        "required": ["kty", "crv", "kid", "x"],
                        "properties": {
                            "kty": {"type": "string"}, "crv": {"type": "string"},
                            "kid": {"type": "string"}, "x": {"type": "string"},
                            "alg": {"type": "string"}, "use": {"type": "string"}
                        }
                    }}}
                },
                "Problem": kit::problem::schema()
            }
        }
    });
    doc.to_string()
}
