//! The CRI ImageService over [`ImageStore`]: translation between CRI messages and the image
//! store, nothing more. Errors go through the one mapping in `status`.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crate::image::ImageStore;
use crate::image::store::ImageRecord;

type Reply<T> = Result<Response<T>, Status>;

pub struct ImageServiceImpl {
    images: Arc<ImageStore>,
}

impl ImageServiceImpl {
    pub fn new(images: Arc<ImageStore>) -> ImageServiceImpl {
        ImageServiceImpl { images }
    }
}

/// The CRI view of an image record. The image's user gives `uid` when numeric (`1000` or
/// `1000:1000`), `username` otherwise, as containerd does.
pub fn to_cri_image(r: &ImageRecord) -> cri::Image {
    let user = r.config.user.clone().unwrap_or_default();
    let user = user.split(':').next().unwrap_or_default().to_string();
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
        Err(_) => (None, user),
    };
    cri::Image {
        id: r.id.clone(),
        repo_tags: r.repo_tags.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: r.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

fn image_name(spec: Option<cri::ImageSpec>, rpc: &str) -> Result<String, Status> {
    match spec {
        Some(s) if !s.image.is_empty() => Ok(s.image),
        _ => Err(Status::invalid_argument(format!("{rpc}: image is missing"))),
    }
}

#[tonic::async_trait]
impl ImageService for ImageServiceImpl {
    async fn list_images(
        &self,
        r: Request<cri::ListImagesRequest>,
    ) -> Reply<cri::ListImagesResponse> {
        let filter = r.into_inner().filter.and_then(|f| f.image).map(|s| s.image);
        let images = self
            .images
            .list(filter.as_deref())
            .iter()
            .map(to_cri_image)
            .collect();
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> Reply<cri::ImageStatusResponse> {
        let r = r.into_inner();
        let name = image_name(r.image, "ImageStatus")?;
        // An unknown image is not an error: the response has no image.
        let status = self.images.status(&name, r.verbose)?;
        let mut info = HashMap::new();
        let image = status.map(|s| {
            if let Some(i) = s.info {
                info.insert("info".to_string(), i);
            }
            to_cri_image(&s.record)
        });
        Ok(Response::new(cri::ImageStatusResponse { image, info }))
    }

    async fn pull_image(&self, r: Request<cri::PullImageRequest>) -> Reply<cri::PullImageResponse> {
        let r = r.into_inner();
        let name = image_name(r.image, "PullImage")?;
        let id = self.images.pull(&name, r.auth.as_ref()).await?;
        // Like containerd: the image reference returned is the image id.
        Ok(Response::new(cri::PullImageResponse { image_ref: id }))
    }

    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> Reply<cri::RemoveImageResponse> {
        let name = image_name(r.into_inner().image, "RemoveImage")?;
        // Removing an image that does not exist succeeds (CRI contract).
        self.images.remove(&name)?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _r: Request<cri::ImageFsInfoRequest>,
    ) -> Reply<cri::ImageFsInfoResponse> {
        let u = self.images.fs_info().await?;
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![cri::FilesystemUsage {
                timestamp: u.timestamp_nanos,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: u.mountpoint.display().to_string(),
                }),
                used_bytes: Some(cri::UInt64Value {
                    value: u.used_bytes,
                }),
                inodes_used: Some(cri::UInt64Value {
                    value: u.inodes_used,
                }),
            }],
            container_filesystems: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::RunConfig;

    #[test]
    fn user_becomes_uid_or_username() {
        let cases = [
            (None, None, ""),
            (Some("keel"), None, "keel"),
            (Some("1000"), Some(1000), ""),
            (Some("1000:50"), Some(1000), ""),
            (Some("keel:staff"), None, "keel"),
        ];
        for (user, uid, username) in cases {
            let r = ImageRecord {
                version: 1,
                id: "sha256:x".into(),
                repo_tags: vec!["t".into()],
                repo_digests: vec![],
                size: 3,
                manifest_digest: String::new(),
                blobs: vec![],
                layers: vec![],
                config: RunConfig {
                    user: user.map(String::from),
                    ..Default::default()
                },
                pulled_at: 0,
            };
            let i = to_cri_image(&r);
            assert_eq!(i.uid.map(|u| u.value), uid, "{user:?}");
            assert_eq!(i.username, username, "{user:?}");
            assert!(!i.pinned);
            assert_eq!(i.spec.map(|s| s.image).as_deref(), Some("sha256:x"));
        }
    }
}
