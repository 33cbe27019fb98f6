//! Thin adapter over bollard: what the phases need from Docker, with
//! eshop's ownership labels applied and errors that name the object.

use bollard::models::{
    ContainerCreateBody, ContainerSummary, HealthStatusEnum, HostConfig, Mount, MountTypeEnum,
    NetworkCreateRequest, PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateOptions,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions,
};
use bollard::Docker;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

use crate::config::Secret;

mod images;

use crate::labels::{
    PHASE as LABEL_PHASE, PROJECT as LABEL_PROJECT, SPEC as LABEL_SPEC, TARGET as LABEL_TARGET,
};

pub fn labels(project: &str, target: &str, phase: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_PROJECT.to_owned(), project.to_owned()),
        (LABEL_TARGET.to_owned(), target.to_owned()),
        (LABEL_PHASE.to_owned(), phase.to_owned()),
    ])
}

/// This project and target; with `phase`, only that phase's objects.
fn owner_filter(project: &str, target: &str, phase: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut labels = vec![
        format!("{LABEL_PROJECT}={project}"),
        format!("{LABEL_TARGET}={target}"),
    ];
    if let Some(p) = phase {
        labels.push(format!("{LABEL_PHASE}={p}"));
    }
    HashMap::from([("label".to_owned(), labels)])
}

/// A container as eshop runs them: on the project's network, read-only
/// root, no capabilities, no privilege escalation, a small /tmp, restarted
/// unless stopped. `body()` also returns the hash of the whole spec, stored
/// as the `eshop/spec` label: equal hash, nothing to change.
pub struct ContainerSpec {
    pub image: String,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub network: String,
    /// (container port, host ip, host port)
    pub ports: Vec<(u16, String, u16)>,
    /// (volume name, mount point)
    pub volumes: Vec<(String, String)>,
    /// Hard memory limit in MiB (swap included, so it is a real limit).
    pub memory_mib: i64,
    /// Credentials the container reads from files under [`SECRETS_DIR`]
    /// (never its environment, which `docker inspect` shows).
    pub secrets: Vec<SecretFile>,
}

/// Where a container finds its [`SecretFile`]s: an anonymous volume of
/// its own (Docker refuses to copy into a read-only root filesystem, not
/// into a volume), filled before the container starts and removed with it.
pub const SECRETS_DIR: &str = "/run/secrets/eshop";

/// One credential as a file: `SECRETS_DIR/name`, mode 0400, owned by the
/// image's user.
pub struct SecretFile {
    /// A file name, or `dir/name` for a file in a directory of them.
    pub name: String,
    pub content: Secret,
}

impl SecretFile {
    pub fn path(&self) -> String {
        format!("{SECRETS_DIR}/{}", self.name)
    }
}

/// A container's health, from its HEALTHCHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Absent,
    Starting,
    Healthy,
    /// Failing its check, or not running.
    Unhealthy,
}

/// Bounds every eshop container: a runaway process cannot fork-bomb the host.
const PIDS_LIMIT: i64 = 256;

impl ContainerSpec {
    pub fn body(&self) -> (ContainerCreateBody, String) {
        let mut body = ContainerCreateBody {
            image: Some(self.image.clone()),
            env: Some(self.env.clone()),
            labels: Some(self.labels.clone()),
            exposed_ports: Some(
                self.ports
                    .iter()
                    .map(|(p, _, _)| (format!("{p}/tcp"), HashMap::new()))
                    .collect(),
            ),
            host_config: Some(HostConfig {
                network_mode: Some(self.network.clone()),
                port_bindings: Some(
                    self.ports
                        .iter()
                        .map(|(p, ip, hp)| {
                            (
                                format!("{p}/tcp"),
                                Some(vec![PortBinding {
                                    host_ip: Some(ip.clone()),
                                    host_port: Some(hp.to_string()),
                                }]),
                            )
                        })
                        .collect(),
                ),
                readonly_rootfs: Some(true),
                memory: Some(self.memory_mib * 1024 * 1024),
                memory_swap: Some(self.memory_mib * 1024 * 1024),
                pids_limit: Some(PIDS_LIMIT),
                tmpfs: Some(HashMap::from([(
                    "/tmp".to_owned(),
                    "rw,noexec,nosuid,size=16m".to_owned(),
                )])),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                mounts: (!self.volumes.is_empty() || !self.secrets.is_empty()).then(|| {
                    let named = self.volumes.iter().map(|(v, target)| Mount {
                        target: Some(target.clone()),
                        source: Some(v.clone()),
                        typ: Some(MountTypeEnum::VOLUME),
                        ..Default::default()
                    });
                    // No source: an anonymous volume, private to the container.
                    let secrets = (!self.secrets.is_empty()).then(|| Mount {
                        target: Some(SECRETS_DIR.to_owned()),
                        typ: Some(MountTypeEnum::VOLUME),
                        ..Default::default()
                    });
                    named.chain(secrets).collect()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Through a Value: its maps are sorted, so the hash does not depend
        // on HashMap iteration order.
        let canonical = serde_json::to_value(&body)
            .and_then(|v| serde_json::to_vec(&v))
            .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(canonical);
        // A changed credential makes a new container. Only a hash of a
        // hash of it reaches the label, truncated to 8 bytes.
        for f in &self.secrets {
            h.update(f.name.as_bytes());
            h.update(Sha256::digest(f.content.expose().as_bytes()));
        }
        let spec: String = h
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Some(l) = body.labels.as_mut() {
            l.insert(LABEL_SPEC.into(), spec.clone());
        }
        (body, spec)
    }
}

/// A container eshop found: its spec hash label, running or not.
#[derive(Debug, Clone)]
pub struct Found {
    pub spec: String,
    pub running: bool,
}

pub struct Engine {
    pub docker: Docker,
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Engine {
    /// Connects via DOCKER_HOST or the local socket and agrees on an API
    /// version (Debian's dockerd 20.10 speaks 1.41).
    pub async fn connect() -> anyhow::Result<Engine> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| anyhow::anyhow!("cannot reach Docker: {e}"))?
            .negotiate_version()
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot reach the Docker daemon ({e}); is dockerd running?")
            })?;
        Ok(Engine { docker })
    }

    pub async fn containers(
        &self,
        project: &str,
        target: &str,
        phase: Option<&str>,
    ) -> anyhow::Result<Vec<ContainerSummary>> {
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(owner_filter(project, target, phase)),
                ..Default::default()
            }))
            .await
            .map_err(|e| anyhow::anyhow!("listing containers: {e}"))
    }

    /// This project's containers by name.
    pub async fn containers_by_name(
        &self,
        project: &str,
        target: &str,
    ) -> anyhow::Result<HashMap<String, Found>> {
        let list = self.containers(project, target, None).await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_owned();
                let spec = c
                    .labels
                    .unwrap_or_default()
                    .get(LABEL_SPEC)
                    .cloned()
                    .unwrap_or_default();
                let running = c.state.map(|s| s.to_string() == "running").unwrap_or(false);
                Some((name, Found { spec, running }))
            })
            .collect())
    }

    /// Creates the container unless one with the same spec is running;
    /// returns whether anything changed.
    pub async fn converge(
        &self,
        name: &str,
        spec: &ContainerSpec,
        have: &HashMap<String, Found>,
    ) -> anyhow::Result<bool> {
        let (body, hash) = spec.body();
        match have.get(name) {
            Some(f) if f.running && f.spec == hash => return Ok(false),
            Some(_) => self.remove_container(name).await?,
            None => {}
        }
        self.create_and_start(name, body, &spec.image, &spec.secrets)
            .await
            .or_else(|e| {
                let msg = e.to_string();
                if msg.contains("port is already allocated")
                    || msg.contains("address already in use")
                {
                    anyhow::bail!(
                        "{e}\nanother program uses that port: choose another one in eshop.toml"
                    )
                }
                Err(e)
            })?;
        Ok(true)
    }

    pub async fn ensure_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> anyhow::Result<bool> {
        if self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .is_ok()
        {
            return Ok(false);
        }
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.into(),
                driver: Some("bridge".into()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating network {name}: {e}"))?;
        Ok(true)
    }

    pub async fn ensure_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> anyhow::Result<bool> {
        if self.docker.inspect_volume(name).await.is_ok() {
            return Ok(false);
        }
        self.docker
            .create_volume(VolumeCreateOptions {
                name: Some(name.into()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating volume {name}: {e}"))?;
        Ok(true)
    }

    /// The numeric user an image runs as (`USER 472` or `472:0`); None
    /// for root, a user name or no USER.
    async fn image_uid(&self, image: &str) -> anyhow::Result<Option<u64>> {
        let i = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|e| anyhow::anyhow!("inspecting image {image}: {e}"))?;
        let user = i.config.and_then(|c| c.user).unwrap_or_default();
        Ok(user.split(':').next().and_then(|u| u.parse().ok()))
    }

    /// Copies `secrets` into the created, not yet started, container.
    async fn put_secrets(
        &self,
        name: &str,
        image: &str,
        secrets: &[SecretFile],
    ) -> anyhow::Result<()> {
        // Owned by the image's user and private to it; an image that runs
        // as a named user gets files anyone in the container may read
        // (the volume is the container's own either way).
        let (uid, mode) = match self.image_uid(image).await? {
            Some(uid) => (uid, 0o400),
            None => (0, 0o444),
        };
        let mut tar = crate::util::Tar::new();
        let mut dirs = std::collections::BTreeSet::new();
        for f in secrets {
            if let Some((dir, _)) = f.name.rsplit_once('/') {
                if dirs.insert(dir.to_owned()) {
                    tar.dir(dir)?;
                }
            }
            tar.file_owned(&f.name, mode, uid, f.content.expose().as_bytes())?;
        }
        self.docker
            .upload_to_container(
                name,
                Some(
                    bollard::query_parameters::UploadToContainerOptionsBuilder::new()
                        .path(SECRETS_DIR)
                        .build(),
                ),
                bollard::body_full(tar.finish()?.into()),
            )
            .await
            .map_err(|e| anyhow::anyhow!("copying credentials into container {name}: {e}"))
    }

    pub async fn create_and_start(
        &self,
        name: &str,
        body: ContainerCreateBody,
        image: &str,
        secrets: &[SecretFile],
    ) -> anyhow::Result<String> {
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.into()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating container {name}: {e}"))?;
        if !secrets.is_empty() {
            if let Err(e) = self.put_secrets(name, image, secrets).await {
                // Not left half-made: the next run creates it again.
                let _ = self.remove_container(name).await;
                return Err(e);
            }
        }
        self.docker
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| anyhow::anyhow!("starting container {name}: {e}"))?;
        Ok(created.id)
    }

    pub async fn remove_container(&self, name: &str) -> anyhow::Result<()> {
        match self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    // Anonymous volumes declared by images go with them.
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("removing container {name}: {e}")),
        }
    }

    /// `Some(true)` healthy, `Some(false)` unhealthy or exited, `None` still starting.
    /// The container's health as its HEALTHCHECK reports it. A container
    /// that does not exist is `Absent`; any other Docker error is an error
    /// (a daemon that cannot answer says nothing about the container).
    pub async fn health(&self, name: &str) -> anyhow::Result<Health> {
        let c = match self
            .docker
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Ok(Health::Absent),
            Err(e) => return Err(anyhow::anyhow!("inspecting container {name}: {e}")),
        };
        let state = c.state.unwrap_or_default();
        if state.running != Some(true) {
            return Ok(Health::Unhealthy);
        }
        Ok(match state.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
            Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
            _ => Health::Starting,
        })
    }

    pub async fn networks(
        &self,
        project: &str,
        target: &str,
        phase: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(owner_filter(project, target, phase)),
            }))
            .await
            .map_err(|e| anyhow::anyhow!("listing networks: {e}"))?;
        Ok(nets.into_iter().filter_map(|n| n.name).collect())
    }

    pub async fn volumes(
        &self,
        project: &str,
        target: &str,
        phase: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        let vols = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(owner_filter(project, target, phase)),
            }))
            .await
            .map_err(|e| anyhow::anyhow!("listing volumes: {e}"))?;
        Ok(vols
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }

    pub async fn remove_network(&self, name: &str) -> anyhow::Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("removing network {name}: {e}")),
        }
    }

    pub async fn remove_volume(&self, name: &str) -> anyhow::Result<()> {
        match self
            .docker
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("removing volume {name}: {e}")),
        }
    }
}
