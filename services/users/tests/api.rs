//! The users service's API on SQLite and on real PostgreSQL: sign-up,
//! login, tokens other services can verify, limits, rotation, roles.

mod common;

use common::{spawn_app, spawn_app_with, spawn_in, Backend};
use kit::auth::Verifier;
use serde_json::{json, Value};
use std::time::Instant;

const PW: &str = "correct horse battery";

kit::on_both_backends!(
    sign_up_login_and_me_with_a_token_others_can_verify,
    bad_input_is_a_422_naming_the_field,
    one_account_per_email_even_when_signing_up_at_once,
    unknown_email_and_wrong_password_look_the_same,
    login_attempts_are_limited_per_account_and_per_address,
    tokens_from_another_key_or_audience_are_refused,
    a_rotated_key_keeps_old_tokens_valid_until_the_previous_key_is_dropped,
    the_first_admin_comes_from_configuration_and_grants_the_role,
);

async fn sign_up_login_and_me_with_a_token_others_can_verify(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.sign_up("  Ann.Lee@Example.com ", PW).await;
    assert_eq!(u["email"], "ann.lee@example.com");
    assert_eq!(u["roles"], json!([]));
    assert!(u.get("password_hash").is_none(), "{u}");

    let res = app
        .post(
            "/tokens",
            &json!({"email": "ANN.LEE@example.com", "password": PW}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let t: Value = res.json().await.unwrap();
    assert_eq!(
        (t["token_type"].as_str(), t["expires_in"].as_u64()),
        (Some("Bearer"), Some(900))
    );
    let token = t["access_token"].as_str().unwrap();

    let me: Value = app.get_as("/me", token).await.json().await.unwrap();
    assert_eq!(me, u);

    // Another service checks it through the published keys.
    let v = Verifier::new(app.url("/.well-known/jwks.json"), "eshop");
    let c = v.verify(token).await.unwrap();
    assert_eq!(c.sub, u["id"].as_str().unwrap());
    assert_eq!(c.exp - c.iat, 900);
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let k = &jwks["keys"][0];
    assert_eq!(
        (k["kty"].as_str(), k["crv"].as_str(), k["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert!(k.get("d").is_none(), "the private key was published: {k}");

    // The generated key is private to the service.
    let key = app.data_dir.path().join("signing-key.der");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    app.stop().await;
}

async fn bad_input_is_a_422_naming_the_field(b: Backend) {
    let app = spawn_app(b).await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"email": "ann@example.com", "password": "short"}),
            422,
            "password",
        ),
        (
            json!({"email": "ann@example.com", "password": "aaaaaaaaaaaaaaaa"}),
            422,
            "password",
        ),
        (
            json!({"email": "ann@example.com", "password": "ann@example.com"}),
            422,
            "password",
        ),
        (
            json!({"email": "not-an-email", "password": PW}),
            422,
            "email",
        ),
        (
            json!({"email": "ann@localhost", "password": PW}),
            422,
            "email",
        ),
        (json!({"email": "ann@example.com"}), 422, ""),
        (
            json!({"email": "ann@example.com", "password": PW, "admin": true}),
            422,
            "",
        ),
        (json!({"email": 5, "password": PW}), 422, ""),
    ];
    for (body, status, field) in cases {
        let res = app.post("/users", &body).await;
        assert_eq!(res.status().as_u16(), status, "{body}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let p: Value = res.json().await.unwrap();
        if !field.is_empty() {
            assert_eq!(p["errors"][0]["field"], field, "{p}");
        }
    }
    let res = app
        .client
        .post(app.url("/users"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = app
        .client
        .post(app.url("/tokens"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    app.stop().await;
}

async fn one_account_per_email_even_when_signing_up_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let tries: Vec<_> = (0..16)
        .map(|i| {
            let (client, url) = (app.client.clone(), app.url("/users"));
            let email = if i % 2 == 0 {
                "bo@example.com"
            } else {
                "BO@example.com "
            };
            tokio::spawn(async move {
                let body = json!({"email": email, "password": PW});
                client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tries {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        15,
        "{statuses:?}"
    );
    app.stop().await;
}

async fn unknown_email_and_wrong_password_look_the_same(b: Backend) {
    // Production hashing cost, and no account limit in the way.
    let app = spawn_app_with(
        b,
        &[
            ("PASSWORD_HASH_MEMORY_KIB", "19456"),
            ("PASSWORD_HASH_ITERATIONS", "2"),
            ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "1000"),
            ("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", "1000"),
        ],
    )
    .await;
    app.sign_up("cy@example.com", PW).await;
    let attempt = |email: &'static str| {
        let app = &app;
        async move {
            let t = Instant::now();
            let res = app
                .post(
                    "/tokens",
                    &json!({"email": email, "password": "wrong horse battery"}),
                )
                .await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (t.elapsed(), status, body)
        }
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let (tk, sk, bk) = attempt("cy@example.com").await;
        let (tu, su, bu) = attempt("nobody@example.com").await;
        assert_eq!((sk, &bk), (su, &bu), "the answers differ");
        assert_eq!(sk, 401);
        known.push(tk);
        unknown.push(tu);
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[3].as_secs_f64(), unknown[3].as_secs_f64());
    // Without the dummy hash an unknown email answers ~50x faster.
    assert!(
        u > k * 0.5 && u < k * 2.0,
        "median wrong password {k:.4}s, unknown email {u:.4}s"
    );
    app.stop().await;
}

async fn login_attempts_are_limited_per_account_and_per_address(b: Backend) {
    let app = spawn_app_with(b, &[("LOGIN_MAX_FAILURES_PER_ACCOUNT", "3")]).await;
    app.sign_up("di@example.com", PW).await;
    app.sign_up("ed@example.com", PW).await;
    let login = |email: &'static str, pw: &'static str| {
        let app = &app;
        async move {
            app.post("/tokens", &json!({"email": email, "password": pw}))
                .await
        }
    };
    for _ in 0..3 {
        assert_eq!(
            login("di@example.com", "wrong horse battery")
                .await
                .status(),
            401
        );
    }
    // Locked for the window, even with the right password; others are not.
    let res = login("di@example.com", PW).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert_eq!(
        res.json::<Value>().await.unwrap()["type"],
        "https://eshop.dev/problems/rate-limited"
    );
    assert_eq!(login("ed@example.com", PW).await.status(), 200);
    // A success resets the account's count.
    for _ in 0..2 {
        assert_eq!(
            login("ed@example.com", "wrong horse battery")
                .await
                .status(),
            401
        );
    }
    assert_eq!(login("ed@example.com", PW).await.status(), 200);
    assert_eq!(
        login("ed@example.com", "wrong horse battery")
            .await
            .status(),
        401
    );
    assert_eq!(login("ed@example.com", PW).await.status(), 200);
    app.stop().await;

    // Per address: every attempt from one client counts, whatever account.
    let app = spawn_app_with(b, &[("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", "4")]).await;
    app.sign_up("fa@example.com", PW).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let email = format!("guess{i}@example.com");
        statuses.push(
            app.post("/tokens", &json!({"email": email, "password": PW}))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429]);
    assert_eq!(
        app.post(
            "/tokens",
            &json!({"email": "fa@example.com", "password": PW})
        )
        .await
        .status(),
        429
    );
    app.stop().await;
}

async fn tokens_from_another_key_or_audience_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let other = spawn_app_with(b, &[("TOKEN_AUDIENCE", "elsewhere")]).await;
    app.sign_up("gu@example.com", PW).await;
    other.sign_up("gu@example.com", PW).await;
    let mine = app.login("gu@example.com", PW).await;
    let theirs = other.login("gu@example.com", PW).await;
    assert_eq!(app.get_as("/me", &mine).await.status(), 200);
    for bad in [theirs.as_str(), "not.a.token", "", &mine[..mine.len() - 4]] {
        let res = app.get_as("/me", bad).await;
        assert_eq!(res.status(), 401, "{bad}");
        assert!(res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
    }
    // No token at all: the challenge without an error code.
    let res = app.client.get(app.url("/me")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    other.stop().await;
    app.stop().await;
}

async fn a_rotated_key_keeps_old_tokens_valid_until_the_previous_key_is_dropped(b: Backend) {
    let app = spawn_app(b).await;
    app.sign_up("hu@example.com", PW).await;
    let old_token = app.login("hu@example.com", PW).await;
    let data = tempfile::tempdir().unwrap();
    let old_key = data.path().join("old.der");
    std::fs::copy(app.data_dir.path().join("signing-key.der"), &old_key).unwrap();
    let new_key = data.path().join("new.der");
    std::fs::write(&new_key, kit::auth::Signer::generate_pkcs8().unwrap()).unwrap();
    let (new_s, old_s) = (
        new_key.to_str().unwrap().to_owned(),
        old_key.to_str().unwrap().to_owned(),
    );

    // Rotation: a new key signs, the old one is still published. (A fresh
    // database: tokens name users by id, so the account is made again and
    // the old token's subject is looked up by the verifier only.)
    let rotated = spawn_in(
        b,
        tempfile::tempdir().unwrap(),
        &[
            ("SIGNING_KEY_FILE", &new_s),
            ("PREVIOUS_SIGNING_KEY_FILE", &old_s),
        ],
    )
    .await;
    let jwks: Value = rotated
        .client
        .get(rotated.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let v = Verifier::new(rotated.url("/.well-known/jwks.json"), "eshop");
    v.verify(&old_token).await.unwrap();
    rotated.sign_up("hu@example.com", PW).await;
    let new_token = rotated.login("hu@example.com", PW).await;
    v.verify(&new_token).await.unwrap();
    assert_eq!(rotated.get_as("/me", &new_token).await.status(), 200);
    rotated.stop().await;

    // The previous key dropped: its tokens stop verifying.
    let after = spawn_in(
        b,
        tempfile::tempdir().unwrap(),
        &[("SIGNING_KEY_FILE", &new_s)],
    )
    .await;
    let v = Verifier::new(after.url("/.well-known/jwks.json"), "eshop");
    assert!(v.verify(&old_token).await.is_err());
    v.verify(&new_token).await.unwrap();
    after.stop().await;
    app.stop().await;
}

async fn the_first_admin_comes_from_configuration_and_grants_the_role(b: Backend) {
    let app = spawn_app_with(b, &[("ADMIN_EMAILS", "Boss@Example.com")]).await;
    let boss = app.sign_up("boss@example.com", PW).await;
    assert_eq!(boss["roles"], json!(["admin"]));
    let ann = app.sign_up("ann@example.com", PW).await;
    let ann_id = ann["id"].as_str().unwrap();
    let boss_t = app.login("boss@example.com", PW).await;
    let ann_t = app.login("ann@example.com", PW).await;
    let put = |token: String, path: String| {
        let app = &app;
        async move {
            app.client
                .put(app.url(&path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    // Ann is no admin: she cannot grant herself the role.
    let res = put(ann_t.clone(), format!("/users/{ann_id}/roles/admin")).await;
    assert_eq!(res.status(), 403);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    let res = put(boss_t.clone(), format!("/users/{ann_id}/roles/admin")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["roles"],
        json!(["admin"])
    );
    // Granting twice changes nothing; unknown roles and users are 404.
    let res = put(boss_t.clone(), format!("/users/{ann_id}/roles/admin")).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["roles"],
        json!(["admin"])
    );
    assert_eq!(
        put(boss_t.clone(), format!("/users/{ann_id}/roles/root"))
            .await
            .status(),
        404
    );
    assert_eq!(
        put(boss_t.clone(), "/users/u0/roles/admin".into())
            .await
            .status(),
        404
    );
    // Her next token carries it.
    let t = app.login("ann@example.com", PW).await;
    let v = Verifier::new(app.url("/.well-known/jwks.json"), "eshop");
    assert!(v.verify(&t).await.unwrap().has_role("admin"));
    let res = app
        .client
        .delete(app.url(&format!("/users/{ann_id}/roles/admin")))
        .bearer_auth(&boss_t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["roles"], json!([]));
    app.stop().await;
}
