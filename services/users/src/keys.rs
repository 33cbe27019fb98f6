//! The token signing keys: the current one signs, a previous one (during a
//! rotation) is still published so tokens it signed stay valid until they
//! expire. Keys are Ed25519 in PKCS#8 (DER, or PEM "PRIVATE KEY"), read
//! from files (a mounted Secret on Kubernetes); without SIGNING_KEY_FILE a
//! key is generated on first start at `$DATA_DIR/signing-key.der` (mode
//! 0600) and reused after. No key material is ever logged.

use base64::Engine;
use kit::auth::Signer;
use std::path::Path;

pub struct Keys {
    pub current: Signer,
    /// The public halves published at /.well-known/jwks.json, current
    /// first.
    pub jwks: serde_json::Value,
}

/// PKCS#8 DER from a file holding DER or PEM.
fn read_pkcs8(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(bytes);
    };
    let Some(body) = text
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)
        .and_then(|r| r.split("-----END PRIVATE KEY-----").next())
    else {
        return Ok(bytes);
    };
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| format!("{}: the PEM body is not base64", path.display()))
}

/// Creates `path` with a new key unless it exists (0600, never replaced:
/// replacing it would log everyone out).
pub fn generate_if_missing(path: &Path) -> Result<bool, String> {
    kit::config::create_secret_file(path, Signer::generate_pkcs8)
}

impl Keys {
    pub fn load(current: &Path, previous: Option<&Path>) -> Result<Self, String> {
        let signer = Signer::from_pkcs8(&read_pkcs8(current)?)
            .map_err(|e| format!("{}: {e}", current.display()))?;
        let mut keys = vec![signer.jwk()];
        if let Some(p) = previous {
            let public = kit::auth::public_key_of(&read_pkcs8(p)?)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            let kid = kit::auth::key_id(&public);
            if kid != signer.kid() {
                keys.push(kit::auth::public_jwk(&kid, &public));
            }
        }
        Ok(Self {
            current: signer,
            jwks: serde_json::json!({ "keys": keys }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_private_and_pem_or_der_both_load() {
        let dir = std::env::temp_dir().join(format!("users-keys-{}", rand::random::<u64>()));
        let key = dir.join("k.der");
        assert!(generate_if_missing(&key).unwrap());
        assert!(!generate_if_missing(&key).unwrap());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let der = std::fs::read(&key).unwrap();
        let pem = dir.join("k.pem");
        std::fs::write(
            &pem,
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                base64::engine::general_purpose::STANDARD.encode(&der)
            ),
        )
        .unwrap();
        let a = Keys::load(&key, None).unwrap();
        let b = Keys::load(&pem, Some(&key)).unwrap();
        assert_eq!(a.current.kid(), b.current.kid());
        // The same key as previous is published once.
        assert_eq!(b.jwks["keys"].as_array().unwrap().len(), 1);
        let other = dir.join("o.der");
        generate_if_missing(&other).unwrap();
        let c = Keys::load(&other, Some(&key)).unwrap();
        assert_eq!(c.jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(c.jwks["keys"][0]["kid"], c.current.kid());
        std::fs::write(&other, "not a key").unwrap();
        assert!(Keys::load(&other, None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
