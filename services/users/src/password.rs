//! Emails and passwords: normalisation, the password policy, and argon2id.
//!
//! Hashing parameters (PASSWORD_HASH_MEMORY_KIB, _ITERATIONS): argon2id,
//! 19 MiB, 2 passes, 1 lane by default, OWASP's recommended minimum. Each
//! hash is stored as a PHC string carrying its own parameters, so raising
//! them later keeps old passwords verifiable. Hashing runs on the blocking
//! pool, at most one per core at a time: a burst of logins queues (up to
//! QUEUE_WAIT, then 503) instead of starving every other request.

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use std::time::Duration;

pub const PASSWORD_MIN_CHARS: usize = 12;
pub const PASSWORD_MAX_CHARS: usize = 128;
pub const EMAIL_MAX: usize = 254;
/// How long a request waits for a free hashing slot before a 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// The address as stored and compared: trimmed, lower case. Err: why it
/// is not an address.
pub fn normalise_email(raw: &str) -> Result<String, String> {
    let e = raw.trim().to_lowercase();
    if e.is_empty() || e.len() > EMAIL_MAX {
        return Err(format!(
            "must be an email address of 3 to {EMAIL_MAX} characters"
        ));
    }
    if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let Some((local, domain)) = e.rsplit_once('@') else {
        return Err("must contain @".into());
    };
    if local.is_empty() || local.len() > 64 || local.contains('@') {
        return Err("must have one @ with a name of 1 to 64 characters before it".into());
    }
    let labels_ok = domain
        .split('.')
        .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    if !domain.contains('.') || !labels_ok {
        return Err("must end in a domain like example.com".into());
    }
    Ok(e)
}

/// Err: what the password lacks, in words for the person choosing it.
pub fn check_password(password: &str, email: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < PASSWORD_MIN_CHARS {
        return Err(format!("must be at least {PASSWORD_MIN_CHARS} characters"));
    }
    if n > PASSWORD_MAX_CHARS {
        return Err(format!("must be at most {PASSWORD_MAX_CHARS} characters"));
    }
    let mut chars = password.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err("must not be one character repeated".into());
    }
    if password.trim().to_lowercase() == email {
        return Err("must not be the email address".into());
    }
    Ok(())
}

/// Too many hashes waiting: answer 503 and let the client retry.
#[derive(Debug)]
pub struct Busy;

/// Argon2's working memory, one per hashing slot, allocated once and
/// reused: a fresh 19 MiB per login left glibc's arenas holding hundreds
/// of MiB after a burst (measured: 507 MB RSS after 10 s of logins), and
/// paid a page fault per 4 KiB every time.
type Memory = Vec<argon2::Block>;

pub struct Hasher {
    argon: Argon2<'static>,
    slots: tokio::sync::Semaphore,
    memory: std::sync::Mutex<Vec<Memory>>,
    /// A hash of nothing anyone knows: an unknown email is checked against
    /// it, so it costs the same time as a wrong password (no enumeration).
    dummy: String,
}

/// Argon2id with `params` into `out`, in `memory` (grown if an old hash
/// asks for more than the configured cost).
fn compute(
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Memory,
) -> Result<(), argon2::Error> {
    let need = params.block_count();
    if memory.len() < need {
        memory.resize(need, argon2::Block::default());
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password_into_with_memory(
        password,
        salt,
        out,
        &mut memory[..need],
    )
}

/// A new PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
fn hash_with(params: &Params, password: &[u8], memory: &mut Memory) -> Option<String> {
    use argon2::password_hash::{Output, PasswordHash as Phc};
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let mut raw = [0u8; 16];
    let salt_bytes = salt.decode_b64(&mut raw).ok()?;
    let mut out = [0u8; 32];
    compute(params.clone(), password, salt_bytes, &mut out, memory).ok()?;
    let phc = Phc {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: params.try_into().ok()?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).ok()?),
    };
    Some(phc.to_string())
}

/// Whether `password` matches the PHC string (compared in constant time).
fn verify_with(phc: &str, password: &[u8], memory: &mut Memory) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(want)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut raw = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut raw) else {
        return false;
    };
    let mut out = vec![0u8; want.len()];
    if compute(params, password, salt, &mut out, memory).is_err() {
        return false;
    }
    // Output's equality is constant-time.
    argon2::password_hash::Output::new(&out).is_ok_and(|got| got == want)
}

impl Hasher {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Arc<Self>, String> {
        let params = Params::new(memory_kib, iterations, 1, None).map_err(|e| e.to_string())?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory: Vec<Memory> = (0..cores)
            .map(|_| vec![argon2::Block::default(); params.block_count()])
            .collect();
        let dummy = hash_with(&params, b"no one's password", &mut memory[0].clone())
            .ok_or("argon2id could not hash")?;
        Ok(Arc::new(Self {
            argon,
            slots: tokio::sync::Semaphore::new(cores),
            memory: std::sync::Mutex::new(memory),
            dummy,
        }))
    }

    /// Runs `f` on the blocking pool with one slot's memory.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Params, &mut Memory) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let _slot = tokio::time::timeout(QUEUE_WAIT, self.slots.acquire())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            // A slot is held, so a buffer is free.
            let mut mem = me
                .memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
                .unwrap_or_default();
            let out = f(me.argon.params(), &mut mem);
            me.memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(mem);
            out
        })
        .await
        .map_err(|_| Busy)
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(self: &Arc<Self>, password: String) -> Result<String, Busy> {
        self.run(move |params, mem| hash_with(params, password.as_bytes(), mem))
            .await?
            .ok_or(Busy)
    }

    /// Whether `password` matches `stored`; with no stored hash (unknown
    /// email) the dummy is checked and the answer is false, in the same
    /// time.
    pub async fn verify(
        self: &Arc<Self>,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, Busy> {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| self.dummy.clone());
        self.run(move |_, mem| verify_with(&phc, password.as_bytes(), mem) && known)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalise_email("  Ann.Lee@Example.COM ").unwrap(),
            "ann.lee@example.com"
        );
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@example",
            "a b@example.com",
            "ann@-x.com",
            "ann@example..com",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_policy_names_what_is_missing() {
        assert!(check_password("correct horse battery", "a@b.co").is_ok());
        assert!(check_password("short", "a@b.co")
            .unwrap_err()
            .contains("at least 12"));
        assert!(check_password(&"a".repeat(20), "a@b.co")
            .unwrap_err()
            .contains("repeated"));
        assert!(check_password(&"ab".repeat(70), "a@b.co")
            .unwrap_err()
            .contains("at most"));
        assert!(check_password("Ann.Lee@example.com", "ann.lee@example.com").is_err());
    }

    #[tokio::test]
    async fn argon2id_hashes_verify_and_an_unknown_account_never_matches() {
        let h = Hasher::new(1024, 1).unwrap();
        let phc = h.hash("correct horse battery".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{phc}");
        assert!(h
            .verify("correct horse battery".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!h
            .verify("wrong horse battery".into(), Some(phc))
            .await
            .unwrap());
        assert!(!h.verify("no one's password".into(), None).await.unwrap());
        // Hashes made by the argon2 crate's own API (and other costs) verify.
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(2048, 2, 1, None).unwrap(),
        )
        .hash_password(b"correct horse battery", &salt)
        .unwrap()
        .to_string();
        assert!(h
            .verify("correct horse battery".into(), Some(other.clone()))
            .await
            .unwrap());
        assert!(!h
            .verify("correct horse batterY".into(), Some(other))
            .await
            .unwrap());
        assert!(!h
            .verify("x".into(), Some("not a hash".into()))
            .await
            .unwrap());
    }
}
