//! The new ReplicaSet of a deployment and the revision numbers (`kubectl rollout history`
//! and `undo`), and pruning old ReplicaSets past `revisionHistoryLimit`.

use super::*;

impl Controller {
    /// Finds (or, with `create`, makes) the new ReplicaSet and gives it the next revision;
    /// the deployment's revision annotation follows it.
    pub(super) async fn sync_revision(
        &self,
        d: &mut Deployment,
        sets: &mut Sets,
        create: bool,
    ) -> Result<(), SyncError> {
        let max_old = sets.old.iter().map(revision_of).max().unwrap_or(0);
        let next = max_old + 1;
        let namespace = d.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &namespace);
        let posts = fenceposts(d)?;
        if let Some(new) = sets.new.clone() {
            let current = revision_of(&new);
            let mut annotations = copied_annotations(d);
            let mut changed = false;
            if current < next {
                annotations.insert(REVISION.into(), next.to_string());
                if current > 0 {
                    let history = annotation(&new.metadata, REVISION_HISTORY)
                        .map_or(current.to_string(), |h| format!("{h},{current}"));
                    annotations.insert(REVISION_HISTORY.into(), history);
                }
            }
            let existing = new.metadata.annotations.clone().unwrap_or_default();
            for (k, v) in &annotations {
                if existing.get(k) != Some(v) {
                    changed = true;
                }
            }
            let revision = annotations
                .get(REVISION)
                .cloned()
                .unwrap_or_else(|| current.to_string());
            let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let rs_min_ready = new.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if changed || min_ready.unwrap_or(0) != rs_min_ready.unwrap_or(0) {
                let name = new.metadata.name.clone().unwrap_or_default();
                let patch = json!({
                    "metadata": {"annotations": annotations},
                    "spec": {"minReadySeconds": min_ready},
                });
                let updated = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                sets.new = Some(updated);
            }
            self.set_deployment_revision(d, &revision).await?;
            return Ok(());
        }
        if !create {
            return Ok(());
        }
        let spec = d.spec.clone().unwrap_or_default();
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let d_name = d.metadata.name.clone().unwrap_or_default();
        let rs_name = format!("{d_name}-{hash}");
        let mut annotations = copied_annotations(d);
        annotations.insert(REVISION.into(), next.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), posts.replicas.to_string());
        annotations.insert(
            MAX_REPLICAS.into(),
            (posts.replicas + posts.surge).to_string(),
        );
        let replicas = if posts.rolling {
            let max_total = posts.replicas + posts.surge;
            let total = sets.total_replicas();
            if total >= max_total {
                0
            } else {
                (max_total - total).min(posts.replicas)
            }
        } else {
            posts.replicas
        };
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![controller_ref("apps/v1", "Deployment", &d.metadata)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if replicas > 0 {
                    self.events
                        .record(
                            &*d,
                            NORMAL,
                            "ScalingReplicaSet",
                            &format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
                        )
                        .await;
                }
                let status = d.status.get_or_insert_with(Default::default);
                let mut conditions = status.conditions.clone().unwrap_or_default();
                if spec.progress_deadline_seconds.is_some() {
                    set_condition(
                        &mut conditions,
                        new_condition(
                            "Progressing",
                            "True",
                            "NewReplicaSetCreated",
                            &format!("Created new replica set \"{rs_name}\""),
                        ),
                    );
                }
                status.conditions = Some(conditions);
                sets.new = Some(created);
                self.set_deployment_revision(d, &next.to_string()).await?;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api.get(&rs_name).await?;
                let same_owner = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                if same_owner
                    && template_without_hash(
                        existing.spec.as_ref().and_then(|s| s.template.as_ref()),
                    ) == template_without_hash(Some(&spec.template))
                {
                    sets.new = Some(existing);
                    return Ok(());
                }
                // A hash collision: count it so the next hash differs.
                let count = collision.unwrap_or(0) + 1;
                let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
                deployments
                    .patch_status(
                        &d_name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"collisionCount": count}})),
                    )
                    .await?;
                Err(SyncError::Invalid(format!(
                    "hash collision for ReplicaSet {rs_name}; collisionCount is now {count}"
                )))
            }
            Err(error) => {
                let message = crate::controllers::replicaset::error_message(&error);
                self.events
                    .record(
                        &*d,
                        WARNING,
                        "FailedCreate",
                        &format!("Failed to create new replica set \"{rs_name}\": {message}"),
                    )
                    .await;
                Err(error.into())
            }
        }
    }

    pub(super) async fn set_deployment_revision(
        &self,
        d: &mut Deployment,
        revision: &str,
    ) -> Result<(), SyncError> {
        if annotation(&d.metadata, REVISION) == Some(revision) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = d.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        d.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(REVISION.into(), revision.into());
        Ok(())
    }

    /// Deletes the oldest empty ReplicaSets past `revisionHistoryLimit`.
    pub(super) async fn cleanup(&self, d: &Deployment, sets: &Sets) -> Result<(), SyncError> {
        let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = sets
            .old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|rs| (revision_of(rs), created(rs)));
        let api: Api<ReplicaSet> = Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or_default(),
        );
        for rs in cleanable.into_iter().take(excess as usize) {
            let status = rs.status.clone().unwrap_or_default();
            if status.replicas != 0
                || replicas_of(rs) != 0
                || rs.metadata.generation > status.observed_generation
            {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}
