//! Tokens against a real JWKS endpoint (an axum server on port 0).

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct Jwks {
    keys: Mutex<Vec<serde_json::Value>>,
    hits: AtomicUsize,
}

async fn serve(jwks: Arc<Jwks>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let j = jwks.clone();
            async move {
                j.hits.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({"keys": *j.keys.lock().unwrap()}))
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn signer() -> Signer {
    Signer::from_pkcs8(&Signer::generate_pkcs8().unwrap()).unwrap()
}

fn encode(claims: &serde_json::Value, s: &Signer, alg: Algorithm) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(s.kid().to_owned());
    jsonwebtoken::encode(&h, claims, &s.key).unwrap()
}

fn claims(aud: &str, iat: u64, exp: u64) -> serde_json::Value {
    serde_json::json!({"sub": "u1", "aud": aud, "iat": iat, "exp": exp, "roles": ["admin"]})
}

#[tokio::test]
async fn only_our_unexpired_eddsa_tokens_for_our_audience_pass() {
    let key = signer();
    let jwks = Arc::new(Jwks {
        keys: Mutex::new(vec![key.jwk()]),
        hits: AtomicUsize::new(0),
    });
    let v = Verifier::new(serve(jwks.clone()).await, "eshop");
    let now = now_secs();

    let good = key
        .sign("u1", "eshop", &["admin".into()], Duration::from_secs(60))
        .unwrap();
    let c = v.verify(&good).await.unwrap();
    assert_eq!((c.sub.as_str(), c.has_role("admin")), ("u1", true));

    let expired = encode(
        &claims("eshop", now - 600, now - 300),
        &key,
        Algorithm::EdDSA,
    );
    assert_eq!(
        v.verify(&expired).await,
        Err(AuthError::Invalid("expired".into()))
    );
    let other_aud = encode(&claims("other", now, now + 60), &key, Algorithm::EdDSA);
    assert_eq!(
        v.verify(&other_aud).await,
        Err(AuthError::Invalid("for another audience".into()))
    );
    let future = encode(
        &claims("eshop", now + 3600, now + 7200),
        &key,
        Algorithm::EdDSA,
    );
    assert!(v.verify(&future).await.is_err());

    // alg none, and HS256 keyed with something public: refused before any key.
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let payload = b64(&claims("eshop", now, now + 60).to_string());
    let none = format!("{}.{payload}.", b64(r#"{"alg":"none","kid":"x"}"#));
    assert!(v.verify(&none).await.is_err());
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("eshop", now, now + 60),
        &EncodingKey::from_secret(key.jwk()["x"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    assert_eq!(
        v.verify(&hs).await,
        Err(AuthError::Invalid("not signed with EdDSA".into()))
    );

    // Tampered payload: the signature no longer verifies.
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = claims("eshop", now, now + 60);
    evil["sub"] = "u2".into();
    let tampered = format!("{}.{}.{}", parts[0], b64(&evil.to_string()), parts[2]);
    assert_eq!(
        v.verify(&tampered).await,
        Err(AuthError::Invalid("its signature does not verify".into()))
    );

    // Another key with our kid: the signature fails. Another key with its
    // own kid: unknown, after at most one refetch.
    let stranger = signer();
    let forged = {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(key.kid().to_owned());
        jsonwebtoken::encode(&h, &claims("eshop", now, now + 60), &stranger.key).unwrap()
    };
    assert!(v.verify(&forged).await.is_err());
    let hits = jwks.hits.load(Ordering::SeqCst);
    for _ in 0..20 {
        let t = stranger
            .sign("u1", "eshop", &[], Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            v.verify(&t).await,
            Err(AuthError::Invalid("signed by an unknown key".into()))
        );
    }
    assert!(
        jwks.hits.load(Ordering::SeqCst) <= hits + 1,
        "unknown keys made the verifier refetch more than once per {REFETCH_AFTER:?}"
    );
}

#[tokio::test]
async fn a_rotated_key_is_fetched_and_old_tokens_stay_valid() {
    let old = signer();
    let jwks = Arc::new(Jwks {
        keys: Mutex::new(vec![old.jwk()]),
        hits: AtomicUsize::new(0),
    });
    let v = Verifier::new(serve(jwks.clone()).await, "eshop");
    let old_token = old
        .sign("u1", "eshop", &[], Duration::from_secs(60))
        .unwrap();
    v.verify(&old_token).await.unwrap();

    // Rotation: the new key signs, both are published.
    let new = signer();
    jwks.keys.lock().unwrap().insert(0, new.jwk());
    // Past the refetch pause (kept short in a test by waiting it out).
    tokio::time::sleep(REFETCH_AFTER).await;
    let new_token = new
        .sign("u1", "eshop", &[], Duration::from_secs(60))
        .unwrap();
    v.verify(&new_token).await.unwrap();
    v.verify(&old_token).await.unwrap();
}

#[tokio::test]
async fn a_retired_key_stops_its_already_verified_tokens_at_the_next_fetch() {
    let old = signer();
    let jwks = Arc::new(Jwks {
        keys: Mutex::new(vec![old.jwk()]),
        hits: AtomicUsize::new(0),
    });
    let v = Verifier::new(serve(jwks.clone()).await, "eshop");
    let old_token = old
        .sign("u1", "eshop", &[], Duration::from_secs(60))
        .unwrap();
    v.verify(&old_token).await.unwrap();
    // Remembered: the second check fetches nothing and passes.
    v.verify(&old_token).await.unwrap();
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 1);

    // The old key is retired; a token of the new one makes the verifier
    // fetch the set again, which forgets what the old key verified.
    let new = signer();
    *jwks.keys.lock().unwrap() = vec![new.jwk()];
    tokio::time::sleep(REFETCH_AFTER).await;
    let new_token = new
        .sign("u1", "eshop", &[], Duration::from_secs(60))
        .unwrap();
    v.verify(&new_token).await.unwrap();
    assert!(matches!(
        v.verify(&old_token).await,
        Err(AuthError::Invalid(_))
    ));
}

#[test]
fn remembered_tokens_expire_like_checked_ones_and_the_memory_is_bounded() {
    let m = Verified::default();
    let c = Claims {
        sub: "u1".into(),
        aud: "eshop".into(),
        iat: 1_000,
        exp: 2_000,
        roles: vec![],
    };
    m.put("t", &c, 1_000);
    assert_eq!(m.get("t", 2_000 + LEEWAY_SECS), Some(c.clone()));
    assert_eq!(m.get("t", 2_001 + LEEWAY_SECS), None, "expired");
    assert_eq!(m.get("t", 1_000), None, "and forgotten");
    assert_eq!(m.get("other", 1_000), None);
    for i in 0..VERIFIED_MAX + 10 {
        m.put(&format!("t{i}"), &c, 1_000);
    }
    assert!(m.0.lock().unwrap().len() <= VERIFIED_MAX);
}

#[tokio::test]
async fn the_extractor_answers_401_with_a_challenge_and_403_without_the_role() {
    let key = signer();
    let jwks = Arc::new(Jwks {
        keys: Mutex::new(vec![key.jwk()]),
        hits: AtomicUsize::new(0),
    });
    let v = Verifier::new(serve(jwks).await, "eshop");
    let app = axum::Router::new()
        .route(
            "/admin",
            axum::routing::get(|c: Caller| async move {
                c.require("admin")?;
                Ok::<_, AuthError>(c.0.sub)
            }),
        )
        .layer(axum::Extension(v));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let get = |auth: Option<String>| {
        let mut r = client.get(format!("{base}/admin"));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let r = get(None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"eshop\"");
    assert_eq!(r.headers()["content-type"], crate::problem::CONTENT_TYPE);
    let r = get(Some("Bearer not.a.jwt".into())).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let user = key
        .sign("u7", "eshop", &[], Duration::from_secs(60))
        .unwrap();
    let r = get(Some(format!("Bearer {user}"))).await.unwrap();
    assert_eq!(r.status(), 403);
    let admin = key
        .sign("u8", "eshop", &["admin".into()], Duration::from_secs(60))
        .unwrap();
    let r = get(Some(format!("bearer {admin}"))).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "u8");
}
