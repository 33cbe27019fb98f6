//! The shop's own services as clients of the users service: each proves it
//! is, say, `orders` with a secret and gets a short-lived token with the
//! role `service`, which lets it act for customers where the API allows
//! (a charge, a refund, a stock hold) without holding anyone's token, e.g.
//! when it finishes a checkout after a restart.
//!
//! The secrets come from files, one per client, named after it
//! (`SERVICE_CLIENTS_DIR`, a mounted Secret); only their SHA-256 stays in
//! memory. A request presents `Authorization: Basic base64(name:secret)`
//! (RFC 6749 §2.3.1, client credentials).

use base64::Engine;
use ring::digest::{digest, SHA256};
use std::collections::HashMap;
use std::path::Path;

/// Below this a secret is too easy to guess.
pub const SECRET_MIN_LEN: usize = 32;

#[derive(Default)]
pub struct Clients(HashMap<String, Vec<u8>>);

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: never the digests.
        let mut names: Vec<_> = self.0.keys().collect();
        names.sort();
        f.debug_tuple("Clients").field(&names).finish()
    }
}

impl Clients {
    /// Every regular file in `dir` is a client: its name the file's, its
    /// secret the file's content (trailing newline ignored).
    pub fn load(dir: &Path) -> Result<Self, String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut clients = HashMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let path = entry.path();
            // Kubernetes mounts Secrets through `..data` symlinks and dot
            // directories: the keys are the names without a leading dot.
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !path.is_file() {
                continue;
            }
            if !valid_name(&name) {
                return Err(format!(
                    "{}: a client name is 1 to 63 lowercase letters, digits or '-'",
                    path.display()
                ));
            }
            let secret = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let secret = secret.trim_end_matches(['\n', '\r']);
            if secret.len() < SECRET_MIN_LEN {
                return Err(format!(
                    "{}: the secret must be at least {SECRET_MIN_LEN} characters",
                    path.display()
                ));
            }
            clients.insert(name, hash(secret));
        }
        Ok(Self(clients))
    }

    /// The client's name if the `Authorization` header proves it.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<String> {
        let encoded = authorization?.strip_prefix("Basic ")?.trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (name, secret) = decoded.split_once(':')?;
        let known = self.0.get(name)?;
        // Digests compared, so the time taken says nothing about how much
        // of the secret matched.
        (hash(secret) == *known).then(|| name.to_owned())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn hash(secret: &str) -> Vec<u8> {
    digest(&SHA256, secret.as_bytes()).as_ref().to_vec()
}

fn valid_name(n: &str) -> bool {
    (1..=63).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("users-clients-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        for (name, content) in files {
            std::fs::write(d.join(name), content).unwrap();
        }
        d
    }

    fn basic(user: &str, secret: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
        )
    }

    #[test]
    fn a_client_proves_itself_with_its_own_secret_only() {
        let s = "s".repeat(40);
        let d = dir(&[
            ("orders", &format!("{s}\n")),
            ("storefront", &"t".repeat(40)),
        ]);
        std::fs::create_dir_all(d.join("..data")).unwrap();
        let c = Clients::load(&d).unwrap();
        assert_eq!(
            c.authenticate(Some(&basic("orders", &s))).as_deref(),
            Some("orders")
        );
        assert_eq!(
            c.authenticate(Some(&basic("storefront", &s))),
            None,
            "another's secret"
        );
        assert_eq!(c.authenticate(Some(&basic("orders", &s[1..]))), None);
        assert_eq!(c.authenticate(Some(&basic("nobody", &s))), None);
        assert_eq!(c.authenticate(Some("Bearer x")), None);
        assert_eq!(c.authenticate(Some("Basic !!!")), None);
        assert_eq!(c.authenticate(None), None);
        assert!(!format!("{c:?}").contains('s'.to_string().repeat(8).as_str()));
    }

    #[test]
    fn short_secrets_and_odd_names_are_refused_naming_the_file() {
        let d = dir(&[("orders", "short")]);
        let e = Clients::load(&d).unwrap_err();
        assert!(e.contains("orders") && e.contains("at least 32"), "{e}");
        let d = dir(&[("Orders", &"s".repeat(40))]);
        assert!(Clients::load(&d).unwrap_err().contains("Orders"));
        assert!(Clients::load(Path::new("/nonexistent/x")).is_err());
    }
}
