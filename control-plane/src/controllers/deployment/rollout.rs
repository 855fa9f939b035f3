//! How a deployment moves replicas between its ReplicaSets: RollingUpdate within maxSurge
//! and maxUnavailable, Recreate, and kube's proportional scaling when the replica count
//! changes mid-rollout.

use super::*;

impl Controller {
    pub(super) async fn rolling_update(
        &self,
        d: &mut Deployment,
        sets: &mut Sets,
        posts: &Fenceposts,
    ) -> Result<Option<Duration>, SyncError> {
        self.sync_revision(d, sets, true).await?;
        // Scale up the new ReplicaSet within maxSurge.
        if let Some(new) = sets.new.clone() {
            let current = replicas_of(&new);
            let target = if current > posts.replicas {
                posts.replicas
            } else {
                let max_total = posts.replicas + posts.surge;
                let total = sets.total_replicas();
                if total >= max_total {
                    current
                } else {
                    current + (max_total - total).min(posts.replicas - current)
                }
            };
            if target != current {
                self.scale_set(d, sets, &new, target).await?;
                return self.write_status(d, sets, true).await;
            }
        }
        // Scale old ReplicaSets down within maxUnavailable.
        if self.scale_down_old(d, sets, posts).await? {
            return self.write_status(d, sets, true).await;
        }
        if complete(d, d.status.as_ref()) {
            self.cleanup(d, sets).await?;
        }
        self.write_status(d, sets, true).await
    }

    pub(super) async fn scale_down_old(
        &self,
        d: &Deployment,
        sets: &mut Sets,
        posts: &Fenceposts,
    ) -> Result<bool, SyncError> {
        let old_count: i32 = sets.old.iter().map(replicas_of).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count = sets.total_replicas();
        let min_available = posts.replicas - posts.unavailable;
        let new_unavailable = sets
            .new
            .as_ref()
            .map_or(0, |rs| replicas_of(rs) - available_of(rs));
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let mut old = sets.old.clone();
        old.sort_by_key(created);
        // First the old pods that are not available anyway.
        let mut cleaned = 0;
        for rs in &old {
            if cleaned >= max_scaled_down {
                break;
            }
            let replicas = replicas_of(rs);
            let unhealthy = replicas - available_of(rs);
            if replicas == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(unhealthy);
            self.scale_set(d, sets, rs, replicas - down).await?;
            cleaned += down;
        }
        // Then available ones, keeping minAvailable.
        let available: i32 = sets.all().iter().map(|rs| available_of(rs)).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            let old: Vec<ReplicaSet> = {
                let mut o = sets.old.clone();
                o.sort_by_key(created);
                o
            };
            for rs in &old {
                if scaled >= total {
                    break;
                }
                let replicas = replicas_of(rs);
                if replicas == 0 {
                    continue;
                }
                let down = replicas.min(total - scaled);
                self.scale_set(d, sets, rs, replicas - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    pub(super) async fn recreate(
        &self,
        d: &mut Deployment,
        sets: &mut Sets,
    ) -> Result<Option<Duration>, SyncError> {
        self.sync_revision(d, sets, false).await?;
        let mut scaled_down = false;
        for rs in sets.old.clone() {
            if replicas_of(&rs) > 0 {
                self.scale_set(d, sets, &rs, 0).await?;
                scaled_down = true;
            }
        }
        let old_running = sets
            .old
            .iter()
            .any(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0));
        if scaled_down || old_running {
            return self.write_status(d, sets, true).await;
        }
        if sets.new.is_none() {
            self.sync_revision(d, sets, true).await?;
        }
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if let Some(new) = sets.new.clone()
            && replicas_of(&new) != want
        {
            self.scale_set(d, sets, &new, want).await?;
        }
        if complete(d, d.status.as_ref()) {
            self.cleanup(d, sets).await?;
        }
        self.write_status(d, sets, true).await
    }

    /// A replica count change of the deployment (not of its template): some active
    /// ReplicaSet was sized for another count.
    pub(super) fn is_scaling_event(&self, d: &Deployment, sets: &Sets) -> bool {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        sets.all()
            .iter()
            .filter(|rs| replicas_of(rs) > 0)
            .any(|rs| {
                annotation(&rs.metadata, DESIRED_REPLICAS)
                    .and_then(|v| v.parse::<i32>().ok())
                    .is_some_and(|desired| desired != want)
            })
    }

    /// kube's proportional scaling: one active ReplicaSet takes the new count; several share
    /// the change in proportion to their sizes, the rest going to the largest.
    pub(super) async fn scale(&self, d: &Deployment, sets: &mut Sets) -> Result<(), SyncError> {
        let posts = fenceposts(d)?;
        let active: Vec<ReplicaSet> = sets
            .all()
            .into_iter()
            .filter(|rs| replicas_of(rs) > 0)
            .cloned()
            .collect();
        let single = match active.len() {
            0 => sets.new.clone().or_else(|| {
                let mut old = sets.old.clone();
                old.sort_by_key(|rs| std::cmp::Reverse(created(rs)));
                old.into_iter().next()
            }),
            1 => active.first().cloned(),
            _ => None,
        };
        if let Some(rs) = single {
            if replicas_of(&rs) != posts.replicas {
                self.scale_set(d, sets, &rs, posts.replicas).await?;
            }
            return Ok(());
        }
        if let Some(new) = sets.new.clone() {
            let saturated = replicas_of(&new) == posts.replicas
                && annotation(&new.metadata, DESIRED_REPLICAS) == Some(&posts.replicas.to_string())
                && available_of(&new) == posts.replicas;
            if saturated {
                for rs in sets.old.clone() {
                    if replicas_of(&rs) > 0 {
                        self.scale_set(d, sets, &rs, 0).await?;
                    }
                }
                return Ok(());
            }
        }
        if !posts.rolling {
            return Ok(());
        }
        let allowed = if posts.replicas > 0 {
            posts.replicas + posts.surge
        } else {
            0
        };
        let current: i32 = active.iter().map(replicas_of).sum();
        let to_add = allowed - current;
        if to_add == 0 {
            return Ok(());
        }
        let mut ordered = active;
        if to_add > 0 {
            ordered.sort_by(|a, b| {
                replicas_of(b)
                    .cmp(&replicas_of(a))
                    .then(created(b).cmp(&created(a)))
            });
        } else {
            ordered.sort_by(|a, b| {
                replicas_of(b)
                    .cmp(&replicas_of(a))
                    .then(created(a).cmp(&created(b)))
            });
        }
        let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::new();
        for rs in &ordered {
            let replicas = replicas_of(rs);
            let annotated = annotation(&rs.metadata, MAX_REPLICAS)
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(status_replicas);
            let fraction = if posts.replicas == 0 {
                -replicas
            } else if annotated == 0 {
                0
            } else {
                let size = f64::from(replicas) * f64::from(posts.replicas + posts.surge)
                    / f64::from(annotated);
                size.round() as i32 - replicas
            };
            let room = to_add - added;
            let share = if to_add > 0 {
                fraction.min(room)
            } else {
                fraction.max(room)
            };
            added += share;
            sizes.push(replicas + share);
        }
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for (rs, size) in ordered.iter().zip(sizes) {
            if replicas_of(rs) != size {
                self.scale_set(d, sets, rs, size).await?;
            }
        }
        Ok(())
    }

    /// Sets a ReplicaSet's replicas (and the desired/max annotations), with kube's event.
    pub(super) async fn scale_set(
        &self,
        d: &Deployment,
        sets: &mut Sets,
        rs: &ReplicaSet,
        replicas: i32,
    ) -> Result<(), SyncError> {
        let posts = fenceposts(d)?;
        let name = rs.metadata.name.clone().unwrap_or_default();
        let current = replicas_of(rs);
        let api: Api<ReplicaSet> = Api::namespaced(
            self.client.clone(),
            rs.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let patch = json!({
            "metadata": {"annotations": {
                DESIRED_REPLICAS: posts.replicas.to_string(),
                MAX_REPLICAS: (posts.replicas + posts.surge).to_string(),
            }},
            "spec": {"replicas": replicas},
        });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        sets.set_replicas(&name, replicas);
        if current != replicas {
            let direction = if replicas > current { "up" } else { "down" };
            self.events
                .record(
                    d,
                    NORMAL,
                    "ScalingReplicaSet",
                    &format!("Scaled {direction} replica set {name} from {current} to {replicas}"),
                )
                .await;
        }
        Ok(())
    }
}
