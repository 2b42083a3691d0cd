//! Reading and writing what a workspace keeps on the engine, for backup and restore: its
//! `/projects` volume as a tar stream, and images saved and loaded as `docker save` tars.
//!
//! Volumes are read and written through a helper container that mounts them at
//! `/v/<workspace>` and never runs: the Engine's archive endpoints work on a created
//! container and cross into its mounts, so one request carries every workspace's files. Its
//! image is an empty root filesystem drydock imports itself (nothing is pulled), labelled with
//! the instance so it goes with the instance's other objects.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ImportImageOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use drydock_core::runtime::{LABEL_INSTANCE, LABEL_WORKSPACE, RuntimeError};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::DockerRuntime;
use crate::error::{engine, gone_or_going, not_found};
use crate::names::{check_name_part, label_filters, volume_name};

/// Bytes from or to the engine; an error ends the stream.
pub type ByteStream = BoxStream<'static, Result<Bytes, RuntimeError>>;

/// Marks the helper image, so that a backup of the instance's images leaves it out.
pub const LABEL_HELPER: &str = "drydock.helper";

/// Where the helper mounts the volumes: `/v/<workspace>`, so archive entries are named
/// `v/<workspace>/…`.
pub const HELPER_ROOT: &str = "v";

/// A created, never started container that mounts workspaces' `/projects` volumes at
/// `/v/<workspace>`.
pub struct VolumesHelper {
    runtime: DockerRuntime,
    id: String,
}

impl VolumesHelper {
    /// Every mounted volume's files as one tar stream: `v/`, then `v/<workspace>/…` for each.
    pub fn download(&self) -> ByteStream {
        let options = DownloadFromContainerOptionsBuilder::default().path(&format!("/{HELPER_ROOT}")).build();
        self.runtime.docker.download_from_container(&self.id, Some(options)).map_err(engine).boxed()
    }

    /// Unpacks a tar stream shaped like [`download`](Self::download)'s into the volumes; the
    /// entry `v/<workspace>` itself sets the owner and mode of that volume's root.
    pub async fn upload(&self, tar: BoxStream<'static, Result<Bytes, std::io::Error>>) -> Result<(), RuntimeError> {
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        self.runtime
            .docker
            .upload_to_container(&self.id, Some(options), bollard::body_try_stream(tar))
            .await
            .map_err(engine)
    }

    pub async fn remove(self) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        if let Err(e) = self.runtime.docker.remove_container(&self.id, Some(options)).await
            && !gone_or_going(&e)
        {
            tracing::warn!(container = %self.id, error = %e, "cannot remove a volume helper container");
        }
    }
}

impl DockerRuntime {
    /// The workspaces of this instance that have a `/projects` volume on the engine.
    pub async fn workspaces_with_projects(&self) -> Result<Vec<String>, RuntimeError> {
        let filters = label_filters(&self.instance, None);
        let options = ListVolumesOptionsBuilder::default().filters(&filters).build();
        let volumes = self.docker.list_volumes(Some(options)).await.map_err(engine)?.volumes.unwrap_or_default();
        let mut ids: Vec<String> = volumes
            .into_iter()
            .filter(|v| v.name.ends_with("-projects"))
            .filter_map(|v| v.labels.get(LABEL_WORKSPACE).cloned())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    pub async fn projects_volume_exists(&self, workspace: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_volume(&volume_name(&self.instance, workspace)).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(engine(e)),
        }
    }

    /// Workspaces of this instance with a running container.
    pub async fn workspaces_running(&self) -> Result<Vec<String>, RuntimeError> {
        let filters = label_filters(&self.instance, None);
        let options = ListContainersOptionsBuilder::default().filters(&filters).build();
        let list = self.docker.list_containers(Some(options)).await.map_err(engine)?;
        let mut ids: Vec<String> =
            list.into_iter().filter_map(|c| c.labels.and_then(|mut l| l.remove(LABEL_WORKSPACE))).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Removes a workspace's stopped containers and its `/projects` volume, so that a restore
    /// can write the volume anew. Refuses while a machine runs.
    pub async fn remove_projects_volume(&self, workspace: &str) -> Result<(), RuntimeError> {
        check_name_part("workspace id", workspace)?;
        if self.workspaces_running().await?.iter().any(|w| w == workspace) {
            return Err(RuntimeError::Engine(format!("workspace {workspace} is running: stop it first")));
        }
        for id in self.container_ids(Some(workspace)).await? {
            let options = RemoveContainerOptionsBuilder::default().force(true).build();
            if let Err(e) = self.docker.remove_container(&id, Some(options)).await
                && !gone_or_going(&e)
            {
                return Err(engine(e));
            }
        }
        match self.docker.remove_volume(&volume_name(&self.instance, workspace), None::<RemoveVolumeOptions>).await {
            Ok(()) => Ok(()),
            Err(e) if gone_or_going(&e) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    /// A helper container mounting the workspaces' `/projects` volumes, each created
    /// (labelled like a start creates it) when missing.
    pub async fn volumes_helper(&self, workspaces: &[String]) -> Result<VolumesHelper, RuntimeError> {
        let mut mounts = Vec::with_capacity(workspaces.len());
        for workspace in workspaces {
            check_name_part("workspace id", workspace)?;
            self.ensure_volume(workspace).await?;
            mounts.push(Mount {
                target: Some(format!("/{HELPER_ROOT}/{workspace}")),
                source: Some(volume_name(&self.instance, workspace)),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }
        let image = self.helper_image().await?;
        let body = ContainerCreateBody {
            image: Some(image),
            cmd: Some(vec!["none".to_string()]),
            // No workspace label: the workspace's own lists and stops must not see it.
            labels: Some(HashMap::from([
                (LABEL_INSTANCE.to_string(), self.instance.clone()),
                (LABEL_HELPER.to_string(), "volume".to_string()),
            ])),
            host_config: Some(HostConfig { mounts: Some(mounts), ..Default::default() }),
            ..Default::default()
        };
        let name = format!("drydock-{}-volume-helper-{}", self.instance, drydock_core::ids::random_lower(8));
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self.docker.create_container(Some(options), body).await.map_err(engine)?;
        Ok(VolumesHelper { runtime: self.clone(), id: created.id })
    }

    /// The empty image helper containers are made from, imported once per instance.
    async fn helper_image(&self) -> Result<String, RuntimeError> {
        let repository = format!("drydock-{}-helper", self.instance.to_ascii_lowercase());
        let image = format!("{repository}:empty");
        match self.docker.inspect_image(&image).await {
            Ok(_) => return Ok(image),
            Err(e) if !not_found(&e) => return Err(engine(e)),
            Err(_) => {}
        }
        // An empty tar archive: two zero blocks.
        let empty = Bytes::from(vec![0u8; 1024]);
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(&repository)
            .tag("empty")
            .changes(vec![format!("LABEL {LABEL_INSTANCE}={}", self.instance), format!("LABEL {LABEL_HELPER}=volume")])
            .build();
        self.docker
            .create_image(Some(options), Some(bollard::body_full(empty)), None)
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(engine)?;
        Ok(image)
    }

    /// This instance's own images (workspace snapshots), by their first tag.
    pub async fn instance_images(&self) -> Result<Vec<String>, RuntimeError> {
        let filters = label_filters(&self.instance, None);
        let options = ListImagesOptionsBuilder::default().filters(&filters).build();
        let images = self.docker.list_images(Some(options)).await.map_err(engine)?;
        Ok(images
            .into_iter()
            .filter(|i| !i.labels.contains_key(LABEL_HELPER))
            .filter_map(|i| i.repo_tags.into_iter().find(|t| t != "<none>:<none>"))
            .collect())
    }

    /// Whether the engine has the image (by name or id).
    pub async fn has_image(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(engine(e)),
        }
    }

    /// The image's id (`sha256:…`), when the engine has it.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(info) => Ok(info.id),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    /// Images as one `docker save` tar (with their tags).
    pub fn save_images(&self, images: &[String]) -> ByteStream {
        let names: Vec<&str> = images.iter().map(String::as_str).collect();
        self.docker.export_images(&names).map_err(engine).boxed()
    }

    /// Loads a `docker save` tar.
    pub async fn load_images(
        &self,
        tar: BoxStream<'static, Result<Bytes, std::io::Error>>,
    ) -> Result<(), RuntimeError> {
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut answers = self.docker.import_image_stream(options, tar, None);
        while let Some(answer) = answers.next().await {
            let info = answer.map_err(engine)?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::Engine(error));
            }
        }
        Ok(())
    }
}
