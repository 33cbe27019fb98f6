//! The shop's services get tokens with the role `service` by their client
//! secret (users' POST /service-tokens and kit::auth::ServiceToken).

mod common;

use common::{spawn_app_with, Backend};
use kit::auth::{AuthError, ServiceToken, Verifier};

const SECRET: &str = "an orders secret of more than thirty-two characters";

#[tokio::test]
async fn a_service_gets_a_service_token_with_its_secret_and_only_with_it() {
    let clients = tempfile::tempdir().unwrap();
    std::fs::write(clients.path().join("orders"), format!("{SECRET}\n")).unwrap();
    let dir = clients.path().to_str().unwrap().to_owned();
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("SERVICE_CLIENTS_DIR", dir.as_str()),
            ("SERVICE_TOKEN_TTL_SECS", "120"),
            ("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", "3"),
        ],
    )
    .await;
    let url = app.url("/service-tokens");

    let orders = ServiceToken::new(&url, "orders", SECRET);
    let token = orders.bearer().await.unwrap();
    let c = Verifier::new(app.url("/.well-known/jwks.json"), "eshop")
        .verify(&token)
        .await
        .unwrap();
    assert_eq!(c.sub, "service:orders");
    assert!(c.has_role("service") && !c.has_role("admin"), "{c:?}");
    assert_eq!(c.exp - c.iat, 120);
    // Cached until it is close to expiring.
    assert_eq!(orders.bearer().await.unwrap(), token);

    // The wrong secret, or another client's name with this secret: a 401
    // with a Basic challenge, and no token.
    for (name, secret) in [
        ("orders", "not the secret at all, but long enough"),
        ("storefront", SECRET),
    ] {
        let e = ServiceToken::new(&url, name, secret)
            .bearer()
            .await
            .unwrap_err();
        assert!(
            matches!(e, AuthError::Unavailable(ref m) if m.contains("401")),
            "{e:?}"
        );
    }
    let res = app.client.post(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Basic realm=\"eshop services\""
    );
    // Failures count against the address, like failed logins: the fourth
    // attempt is refused before the secret is even looked at.
    let res = app
        .client
        .post(&url)
        .basic_auth("orders", Some(SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_bad_clients_directory_stops_the_service_at_start_naming_the_file() {
    let clients = tempfile::tempdir().unwrap();
    std::fs::write(clients.path().join("orders"), "short").unwrap();
    let mut map =
        kit::config::Map::new([("SERVICE_CLIENTS_DIR", clients.path().to_str().unwrap())]);
    map.0
        .insert("DATA_DIR".into(), clients.path().to_str().unwrap().into());
    let e = users::Config::from_source(&map).unwrap_err().to_string();
    assert!(
        e.contains("SERVICE_CLIENTS_DIR") && e.contains("orders"),
        "{e}"
    );
    assert!(!e.contains("short"), "the secret is never echoed: {e}");
}
