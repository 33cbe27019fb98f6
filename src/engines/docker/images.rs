//! Images: build, push, the registry's digest, listing and removal.

use bollard::query_parameters::{
    BuildImageOptions, ListImagesOptions, PushImageOptions, RemoveImageOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;

use super::{is_not_found, owner_filter, Engine};

/// dockerd's words when an image ID it picked from the build cache is gone
/// by the time it uses it ("unable to find image \"sha256:…\"", or "No such
/// image: sha256:…"): only image IDs, never a missing named base.
fn vanished_layer(msg: &str) -> bool {
    ["unable to find image \"sha256:", "No such image: sha256:"]
        .iter()
        .any(|w| msg.contains(w))
}

/// How dockerd words "the registry has no such tag" when it relays the
/// registry's answer (the status it uses varies by version).
fn manifest_unknown(e: &bollard::errors::Error) -> bool {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            let m = message.to_ascii_lowercase();
            m.contains("manifest unknown") || m.contains("not found")
        }
        _ => false,
    }
}

impl Engine {
    pub async fn image_id(&self, reference: &str) -> anyhow::Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(i.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("inspecting image {reference}: {e}")),
        }
    }

    /// Builds from an in-memory tar context; `on_line` sees each output line.
    /// A build whose cached layer vanished mid-build (another project's
    /// destroy pruned the untagged parents it shared) is built again: the
    /// legacy builder then recreates the layer.
    pub async fn build(
        &self,
        tag: &str,
        context_tar: Vec<u8>,
        labels: HashMap<String, String>,
        mut on_line: impl FnMut(&str),
    ) -> anyhow::Result<()> {
        let mut attempt = 1;
        loop {
            match self
                .build_once(tag, &context_tar, &labels, &mut on_line)
                .await
            {
                Err(e) if attempt < 3 && vanished_layer(&e.to_string()) => {
                    on_line(&format!("a cached layer vanished ({e}); building again"));
                    attempt += 1;
                }
                r => return r.map_err(|e| anyhow::anyhow!("building {tag}: {e}")),
            }
        }
    }

    async fn build_once(
        &self,
        tag: &str,
        context_tar: &[u8],
        labels: &HashMap<String, String>,
        on_line: &mut impl FnMut(&str),
    ) -> anyhow::Result<()> {
        let opts = BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(tag.into()),
            rm: true,
            forcerm: true,
            labels: Some(labels.clone()),
            ..Default::default()
        };
        let body = bollard::body_full(context_tar.to_vec().into());
        let mut stream = self.docker.build_image(opts, None, Some(body));
        while let Some(item) = stream.next().await {
            let info = item?;
            if let Some(detail) = info.error_detail {
                anyhow::bail!("{}", detail.message.unwrap_or_default().trim());
            }
            if let Some(line) = info.stream {
                let line = line.trim();
                if !line.is_empty() {
                    on_line(line);
                }
            }
        }
        Ok(())
    }

    /// Pushes `repo:tag`; returns the manifest digest the registry reported.
    pub async fn push(
        &self,
        repo: &str,
        tag: &str,
        credentials: Option<bollard::auth::DockerCredentials>,
        mut on_progress: impl FnMut(&str),
    ) -> anyhow::Result<Option<String>> {
        let mut stream = self.docker.push_image(
            repo,
            Some(PushImageOptions {
                tag: Some(tag.into()),
                ..Default::default()
            }),
            credentials,
        );
        let mut digest = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| anyhow::anyhow!("pushing {repo}:{tag}: {e}"))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                anyhow::bail!("pushing {repo}:{tag}: {err}");
            }
            if let Some(status) = &info.status {
                // "<tag>: digest: sha256:… size: N"
                if let Some(d) = status.split("digest: ").nth(1) {
                    digest = d.split_whitespace().next().map(str::to_owned);
                }
                let line = match &info.progress {
                    Some(p) => format!("{status} {p}"),
                    None => status.clone(),
                };
                on_progress(&line);
            }
        }
        Ok(digest)
    }

    /// The digest the registry holds for `reference` (`repo:tag`), asked
    /// through the daemon (which knows the registry's TLS and auth), or
    /// None when the registry does not have it.
    pub async fn registry_digest(
        &self,
        reference: &str,
        credentials: Option<bollard::auth::DockerCredentials>,
    ) -> anyhow::Result<Option<String>> {
        match self
            .docker
            .inspect_registry_image(reference, credentials)
            .await
        {
            Ok(d) => Ok(Some(d.descriptor.digest.unwrap_or_default())),
            Err(e) if is_not_found(&e) || manifest_unknown(&e) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("asking the registry for {reference}: {e}")),
        }
    }

    /// Image ids with their tags.
    pub async fn images(
        &self,
        project: &str,
        target: &str,
        phase: Option<&str>,
    ) -> anyhow::Result<Vec<(String, Vec<String>)>> {
        let imgs = self
            .docker
            .list_images(Some(ListImagesOptions {
                filters: Some(owner_filter(project, target, phase)),
                ..Default::default()
            }))
            .await
            .map_err(|e| anyhow::anyhow!("listing images: {e}"))?;
        Ok(imgs.into_iter().map(|i| (i.id, i.repo_tags)).collect())
    }

    pub async fn remove_image(&self, reference: &str) -> anyhow::Result<()> {
        match self
            .docker
            .remove_image(
                reference,
                Some(RemoveImageOptions {
                    force: true,
                    ..Default::default()
                }),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("removing image {reference}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_vanished_cache_layer_is_built_again() {
        for (msg, again) in [
            (
                r#"Docker stream error: unable to find image "sha256:b461bea1c1cf""#,
                true,
            ),
            ("No such image: sha256:b461bea1c1cf", true),
            // A missing base is the user's to fix, not a race.
            ("No such image: eshop-base:local", false),
            ("COPY failed: file not found in build context", false),
        ] {
            assert_eq!(super::vanished_layer(msg), again, "{msg}");
        }
    }

    /// A stand-in dockerd on a Unix socket (no real daemon can be made to
    /// lose a layer on cue): the first build's stream reports a vanished
    /// layer, the second succeeds. eshop must ask twice and succeed.
    #[tokio::test]
    async fn a_build_whose_layer_vanished_is_run_again() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let answers = [
            r#"{"stream":"Step 1/2 : FROM base"}"#.to_owned()
                + "\n"
                + r#"{"errorDetail":{"message":"unable to find image \"sha256:b461\""},"error":"unable to find image \"sha256:b461\""}"#,
            r#"{"stream":"Successfully built 1234"}"#.to_owned(),
        ];
        let server = tokio::spawn(async move {
            let mut paths = Vec::new();
            for answer in answers {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as Content-Length says.
                let body_len = loop {
                    let n = conn.read(&mut buf).await.unwrap();
                    assert!(n > 0, "eshop closed the connection mid-request");
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        break end + 4 + len;
                    }
                };
                while req.len() < body_len {
                    let n = conn.read(&mut buf).await.unwrap();
                    assert!(n > 0, "eshop closed the connection mid-request");
                    req.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8_lossy(&req).to_string();
                paths.push(head.lines().next().unwrap_or_default().to_owned());
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}\n",
                    answer.len() + 1
                );
                conn.write_all(reply.as_bytes()).await.unwrap();
                conn.shutdown().await.unwrap();
            }
            paths
        });
        let docker = bollard::Docker::connect_with_unix(
            sock.to_str().unwrap(),
            10,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        let engine = super::Engine { docker };
        let mut lines = Vec::new();
        let mut tar = crate::util::Tar::new();
        tar.file_owned("Dockerfile", 0o644, 0, b"FROM base\n")
            .unwrap();
        engine
            .build("shop:1", tar.finish().unwrap(), Default::default(), |l| {
                lines.push(l.to_owned())
            })
            .await
            .unwrap();
        let paths = server.await.unwrap();
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(
            paths
                .iter()
                .all(|p| p.starts_with("POST ") && p.contains("/build?")),
            "{paths:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("a cached layer vanished")),
            "{lines:?}"
        );
        assert_eq!(
            lines.last().map(String::as_str),
            Some("Successfully built 1234")
        );
    }
}
