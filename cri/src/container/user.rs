//! Resolving who a container's process runs as: the CRI security context's run_as_user /
//! run_as_group / run_as_username and supplemental groups, or the image's `USER`, looked up in the
//! container's own `/etc/passwd` and `/etc/group`.
//!
//! Owns the lookup only; it reads files inside the rootfs and refuses to follow a symlink there
//! (a symlinked `/etc/passwd` could point anywhere on the host).

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The user name, when /etc/passwd knows the uid.
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("user {0:?} is not in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    UnknownGroup(String),
    #[error("user {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// What the request and the image say about the user.
#[derive(Debug, Clone, Default)]
pub struct UserRequest<'a> {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: &'a str,
    pub supplemental_groups: &'a [i64],
    /// The image config's `User` (`uid`, `name`, `uid:gid`, `name:group`).
    pub image_user: &'a str,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_db(rootfs: &Path, file: &str) -> String {
    let path = rootfs.join(file);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => std::fs::read_to_string(&path).unwrap_or_default(),
        _ => String::new(),
    }
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4).then_some(())?;
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .collect()
}

fn groups(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3).then_some(())?;
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn to_id(v: i64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Invalid(format!("{what} {v}"), "out of range"))
}

/// Resolves the user against the rootfs's databases, in the order containerd and the kubelet expect:
/// run_as_user, else run_as_username, else the image's USER; run_as_group overrides the group;
/// supplemental groups come from /etc/group membership plus the request's list.
pub fn resolve(rootfs: &Path, req: &UserRequest<'_>) -> Result<ResolvedUser, Error> {
    let users = passwd(&read_db(rootfs, "etc/passwd"));
    let grps = groups(&read_db(rootfs, "etc/group"));
    let by_uid = |uid: u32| users.iter().find(|u| u.uid == uid);

    let (uid, mut gid, _explicit_group) = if let Some(u) = req.run_as_user {
        let uid = to_id(u, "run_as_user")?;
        (uid, by_uid(uid).map(|e| e.gid).unwrap_or(0), false)
    } else if !req.run_as_username.is_empty() {
        let e = users
            .iter()
            .find(|e| e.name == req.run_as_username)
            .ok_or_else(|| Error::UnknownUser(req.run_as_username.to_string()))?;
        (e.uid, e.gid, false)
    } else if !req.image_user.is_empty() {
        let (user, group) = match req.image_user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (req.image_user, None),
        };
        let (uid, gid) = match user.parse::<u32>() {
            Ok(uid) => (uid, by_uid(uid).map(|e| e.gid).unwrap_or(0)),
            Err(_) => {
                let e = users
                    .iter()
                    .find(|e| e.name == user)
                    .ok_or_else(|| Error::UnknownUser(user.to_string()))?;
                (e.uid, e.gid)
            }
        };
        match group {
            Some(g) => {
                let gid = match g.parse::<u32>() {
                    Ok(gid) => gid,
                    Err(_) => grps
                        .iter()
                        .find(|e| e.name == g)
                        .map(|e| e.gid)
                        .ok_or_else(|| Error::UnknownGroup(g.to_string()))?,
                };
                (uid, gid, true)
            }
            None => (uid, gid, false),
        }
    } else {
        (0, 0, false)
    };
    if let Some(g) = req.run_as_group {
        gid = to_id(g, "run_as_group")?;
    }
    let name = by_uid(uid).map(|e| e.name.clone());
    let mut additional = Vec::new();
    if let Some(n) = &name {
        for g in &grps {
            if g.members.iter().any(|m| m == n) && g.gid != gid && !additional.contains(&g.gid) {
                additional.push(g.gid);
            }
        }
    }
    for &g in req.supplemental_groups {
        let g = to_id(g, "supplemental group")?;
        if !additional.contains(&g) {
            additional.push(g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("etc")).expect("etc");
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app\nstaff:x:50:root,app\n",
        )
        .expect("group");
        d
    }

    fn check(req: UserRequest<'_>) -> Result<(u32, u32, Vec<u32>), Error> {
        let d = rootfs();
        resolve(d.path(), &req).map(|u| (u.uid, u.gid, u.additional_gids))
    }

    #[test]
    fn cases() {
        assert_eq!(check(UserRequest::default()), Ok((0, 0, vec![50])));
        let img = |u| UserRequest {
            image_user: u,
            ..Default::default()
        };
        assert_eq!(check(img("app")), Ok((1000, 1000, vec![10, 50])));
        assert_eq!(check(img("1000")), Ok((1000, 1000, vec![10, 50])));
        assert_eq!(check(img("1000:wheel")), Ok((1000, 10, vec![50])));
        assert_eq!(check(img("4242:7")), Ok((4242, 7, vec![])));
        assert_eq!(
            check(img("nobody")),
            Err(Error::UnknownUser("nobody".into()))
        );
        assert_eq!(
            check(img("app:nogroup")),
            Err(Error::UnknownGroup("nogroup".into()))
        );
        let run_as = UserRequest {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: &[4000],
            image_user: "root",
            ..Default::default()
        };
        assert_eq!(check(run_as), Ok((1000, 3000, vec![10, 50, 4000])));
        let by_name = UserRequest {
            run_as_username: "app",
            ..Default::default()
        };
        assert_eq!(check(by_name), Ok((1000, 1000, vec![10, 50])));
        let negative = UserRequest {
            run_as_user: Some(-1),
            ..Default::default()
        };
        assert!(check(negative).is_err());
    }
}
