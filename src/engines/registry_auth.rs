//! Registry credentials for pushes, found as the Docker CLI finds them.

/// Registry credentials: `auth` (the configuration's
/// `ESHOP_REGISTRY_USERNAME`/`_PASSWORD`), else what the Docker CLI would
/// use for that registry host, from `DOCKER_CONFIG/config.json` (else
/// `$HOME/.docker/config.json`): see [`from_docker_config`]. Never logged.
pub fn credentials(
    registry: &str,
    auth: Option<&crate::config::RegistryAuth>,
) -> Option<bollard::auth::DockerCredentials> {
    let host = registry.split('/').next().unwrap_or(registry);
    if let Some(a) = auth {
        return Some(bollard::auth::DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.expose().to_owned()),
            serveraddress: Some(host.to_owned()),
            ..Default::default()
        });
    }
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))?;
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    from_docker_config(&json, host, credential_helper)
}

/// The Docker CLI's order: `credHelpers[host]`, else `credsStore`, else
/// `auths[host]`. Hosts match exactly (`localhost:5000` is not
/// `localhost:50001`); keys may carry a scheme and a path
/// (`https://index.docker.io/v1/`), which are not part of the host.
pub fn from_docker_config(
    json: &serde_json::Value,
    host: &str,
    helper: impl Fn(&str, &str) -> Option<(String, String)>,
) -> Option<bollard::auth::DockerCredentials> {
    let helper_name = json["credHelpers"][host]
        .as_str()
        .or_else(|| json["credsStore"].as_str())
        .filter(|h| !h.is_empty());
    if let Some(name) = helper_name {
        let (username, secret) = helper(name, host)?;
        // A helper's "<token>" user means the secret is an identity token.
        let token = username == "<token>";
        return Some(bollard::auth::DockerCredentials {
            username: (!token).then_some(username),
            password: (!token).then(|| secret.clone()),
            identitytoken: token.then_some(secret),
            serveraddress: Some(host.to_owned()),
            ..Default::default()
        });
    }
    let entry = json["auths"]
        .as_object()?
        .iter()
        .find(|(k, _)| registry_host(k) == host)?
        .1;
    let auth = entry.get("auth")?.as_str()?;
    Some(bollard::auth::DockerCredentials {
        auth: Some(auth.to_owned()),
        serveraddress: Some(host.to_owned()),
        ..Default::default()
    })
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `localhost:5000` as is.
fn registry_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Runs `docker-credential-<name> get` with the host on stdin (the
/// credential-helper protocol) and reads `{"Username", "Secret"}`. The
/// helper's name comes from the user's own Docker config and is checked to
/// be a plain name, so it cannot point at another program.
fn credential_helper(name: &str, host: &str) -> Option<(String, String)> {
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return None;
    }
    run_helper(
        std::ffi::OsStr::new(&format!("docker-credential-{name}")),
        host,
    )
}

fn run_helper(program: &std::ffi::OsStr, host: &str) -> Option<(String, String)> {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(host.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((
        v["Username"].as_str()?.to_owned(),
        v["Secret"].as_str()?.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_helper(_: &str, _: &str) -> Option<(String, String)> {
        panic!("no helper is configured")
    }

    #[test]
    fn hosts_match_exactly_not_by_prefix() {
        let cfg = json!({"auths": {
            "localhost:50001": {"auth": "b3RoZXI6b3RoZXI="},
            "https://index.docker.io/v1/": {"auth": "aHViOmh1Yg=="}
        }});
        assert!(from_docker_config(&cfg, "localhost:5000", no_helper).is_none());
        let c = from_docker_config(&cfg, "localhost:50001", no_helper).unwrap();
        assert_eq!(c.auth.as_deref(), Some("b3RoZXI6b3RoZXI="));
        let c = from_docker_config(&cfg, "index.docker.io", no_helper).unwrap();
        assert_eq!(c.auth.as_deref(), Some("aHViOmh1Yg=="));
        assert!(from_docker_config(&cfg, "index.docker", no_helper).is_none());
    }

    #[test]
    fn cred_helpers_then_creds_store_then_auths() {
        let asked = std::sync::Mutex::new(Vec::new());
        let helper = |name: &str, host: &str| {
            asked.lock().unwrap().push(format!("{name} {host}"));
            Some(("robot".to_owned(), format!("from-{name}")))
        };
        let cfg = json!({
            "credHelpers": {"ecr.example:443": "ecr-login"},
            "credsStore": "pass",
            "auths": {"ecr.example:443": {}, "reg.example": {}}
        });
        let c = from_docker_config(&cfg, "ecr.example:443", helper).unwrap();
        assert_eq!(c.password.as_deref(), Some("from-ecr-login"));
        let c = from_docker_config(&cfg, "reg.example", helper).unwrap();
        assert_eq!(c.password.as_deref(), Some("from-pass"));
        assert_eq!(c.username.as_deref(), Some("robot"));
        assert_eq!(
            *asked.lock().unwrap(),
            ["ecr-login ecr.example:443", "pass reg.example"]
        );
        // An identity token travels as one.
        let token = |_: &str, _: &str| Some(("<token>".to_owned(), "tok".to_owned()));
        let c = from_docker_config(&cfg, "reg.example", token).unwrap();
        assert_eq!(
            (c.username, c.identitytoken.as_deref()),
            (None, Some("tok"))
        );
    }

    #[test]
    fn a_helper_program_gets_the_host_on_stdin_and_its_name_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("docker-credential-eshoptest");
        // A stand-in for docker-credential-pass: echoes what it was asked.
        std::fs::write(
            &bin,
            "#!/bin/sh\nread host\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"u\",\"Secret\":\"s-%s\"}' \"$host\" \"$host\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert_eq!(
            run_helper(bin.as_os_str(), "reg.example"),
            Some(("u".to_owned(), "s-reg.example".to_owned()))
        );
        assert!(credential_helper("../evil", "reg.example").is_none());
    }
}
