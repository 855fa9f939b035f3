//! A deployment's status: the counts, and the Available, Progressing (with the progress
//! deadline and pause) and ReplicaFailure conditions.

use super::*;

/// kube's SetDeploymentCondition: the same status and reason changes nothing; the same status
/// keeps its transition time.
pub(super) fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    mut new: DeploymentCondition,
) {
    if let Some(current) = condition(conditions, &new.type_) {
        if current.status == new.status && current.reason == new.reason {
            return;
        }
        if current.status == new.status {
            new.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
}

pub(super) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> DeploymentCondition {
    let now = Time(common::now());
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

pub(super) fn condition<'a>(
    conditions: &'a [DeploymentCondition],
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

impl Controller {
    /// Progressing says whether the deployment is paused (Unknown/DeploymentPaused) or was
    /// resumed.
    pub(super) async fn check_paused_conditions(
        &self,
        d: &mut Deployment,
    ) -> Result<(), SyncError> {
        let spec = d.spec.clone().unwrap_or_default();
        if spec.progress_deadline_seconds.is_none() {
            return Ok(());
        }
        let status = d.status.get_or_insert_with(Default::default);
        let mut conditions = status.conditions.clone().unwrap_or_default();
        let current = condition(&conditions, "Progressing");
        if current.is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
            return Ok(());
        }
        let paused_exists =
            current.is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        let paused = spec.paused.unwrap_or(false);
        if paused && !paused_exists {
            set_condition(
                &mut conditions,
                new_condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentPaused",
                    "Deployment is paused",
                ),
            );
        } else if !paused && paused_exists {
            set_condition(
                &mut conditions,
                new_condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentResumed",
                    "Deployment is resumed",
                ),
            );
        } else {
            return Ok(());
        }
        status.conditions = Some(conditions);
        Ok(())
    }

    /// Writes the counts and conditions; with `progress`, also judges progress against the
    /// deadline. Returns when to look again for a deadline.
    pub(super) async fn write_status(
        &self,
        d: &Deployment,
        sets: &Sets,
        progress: bool,
    ) -> Result<Option<Duration>, SyncError> {
        let spec = d.spec.clone().unwrap_or_default();
        let want = spec.replicas.unwrap_or(1);
        let old = d.status.clone().unwrap_or_default();
        let all = sets.all();
        let status_of = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
        let available: i32 = all.iter().map(|rs| available_of(rs)).sum();
        let total_spec: i32 = all.iter().map(|rs| replicas_of(rs)).sum();
        let replicas: i32 = all.iter().map(|rs| status_of(rs).replicas).sum();
        let updated = sets.new.as_ref().map_or(0, |rs| status_of(rs).replicas);
        let ready: i32 = all
            .iter()
            .map(|rs| status_of(rs).ready_replicas.unwrap_or(0))
            .sum();
        let unavailable = (total_spec - available).max(0);
        let mut conditions = old.conditions.clone().unwrap_or_default();
        let max_unavailable =
            fenceposts(d).map_or(0, |p| if p.rolling { p.unavailable } else { 0 });
        if available >= want - max_unavailable {
            set_condition(
                &mut conditions,
                new_condition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                ),
            );
        } else {
            set_condition(
                &mut conditions,
                new_condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                ),
            );
        }
        let mut again = None;
        let new_name = sets
            .new
            .as_ref()
            .and_then(|rs| rs.metadata.name.clone())
            .unwrap_or_default();
        let deadline = spec.progress_deadline_seconds;
        let now = common::now();
        if progress {
            if deadline.is_none() {
                conditions.retain(|c| c.type_ != "Progressing");
            }
            let current = condition(&conditions, "Progressing").cloned();
            let complete_already = replicas == updated
                && current
                    .as_ref()
                    .is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
            if let (Some(deadline), false) = (deadline, complete_already) {
                let observed = d.metadata.generation;
                let done = updated == want && replicas == want && available == want;
                let progressing = updated > old.updated_replicas.unwrap_or(0)
                    || (replicas - updated)
                        < (old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0))
                    || ready > old.ready_replicas.unwrap_or(0)
                    || available > old.available_replicas.unwrap_or(0);
                if done && observed.is_some() {
                    set_condition(
                        &mut conditions,
                        new_condition(
                            "Progressing",
                            "True",
                            "NewReplicaSetAvailable",
                            &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                        ),
                    );
                } else if progressing {
                    let mut c = new_condition(
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        &format!("ReplicaSet \"{new_name}\" is progressing."),
                    );
                    if let Some(current) = current.as_ref().filter(|c| c.status == "True") {
                        c.last_transition_time = current.last_transition_time.clone();
                    }
                    conditions.retain(|c| c.type_ != "Progressing");
                    conditions.push(c);
                } else if let Some(current) = current.as_ref() {
                    let reason = current.reason.as_deref();
                    if reason != Some("NewReplicaSetAvailable")
                        && reason != Some("ProgressDeadlineExceeded")
                    {
                        let from = current
                            .last_update_time
                            .as_ref()
                            .map_or(now.as_second(), |t| t.0.as_second());
                        let at = from + i64::from(deadline);
                        if at < now.as_second() {
                            set_condition(
                                &mut conditions,
                                new_condition(
                                    "Progressing",
                                    "False",
                                    "ProgressDeadlineExceeded",
                                    &format!(
                                        "ReplicaSet \"{new_name}\" has timed out progressing."
                                    ),
                                ),
                            );
                        } else if reason != Some("DeploymentPaused") {
                            again = Some(Duration::from_secs(
                                (at - now.as_second()).max(0) as u64 + 1,
                            ));
                        }
                    }
                } else if sets.new.is_some() {
                    set_condition(
                        &mut conditions,
                        new_condition(
                            "Progressing",
                            "True",
                            "FoundNewReplicaSet",
                            &format!("Found new replica set \"{new_name}\""),
                        ),
                    );
                }
            }
            let failure = sets.new.as_ref().and_then(|rs| {
                rs.status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "ReplicaFailure")
                    .cloned()
            });
            match failure {
                Some(f) => {
                    let mut c = new_condition(
                        "ReplicaFailure",
                        &f.status,
                        f.reason.as_deref().unwrap_or_default(),
                        f.message.as_deref().unwrap_or_default(),
                    );
                    c.last_transition_time = f.last_transition_time.clone();
                    set_condition(&mut conditions, c);
                }
                None => conditions.retain(|c| c.type_ != "ReplicaFailure"),
            }
        }
        let unchanged = old.replicas.unwrap_or(0) == replicas
            && old.updated_replicas.unwrap_or(0) == updated
            && old.ready_replicas.unwrap_or(0) == ready
            && old.available_replicas.unwrap_or(0) == available
            && old.unavailable_replicas.unwrap_or(0) == unavailable
            && old.observed_generation == d.metadata.generation
            && old.conditions.clone().unwrap_or_default() == conditions
            && self.stored_conditions_match(d, &conditions);
        if unchanged {
            return Ok(again);
        }
        let patch = json!({"status": {
            "observedGeneration": d.metadata.generation,
            "replicas": omit_zero(replicas),
            "updatedReplicas": omit_zero(updated),
            "readyReplicas": omit_zero(ready),
            "availableReplicas": omit_zero(available),
            "unavailableReplicas": omit_zero(unavailable),
            "conditions": conditions,
        }});
        let api: Api<Deployment> = Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = d.metadata.name.clone().unwrap_or_default();
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(again),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Whether the conditions in the cache are the ones computed (the sync may have changed
    /// them in memory, e.g. NewReplicaSetCreated or DeploymentPaused).
    pub(super) fn stored_conditions_match(
        &self,
        d: &Deployment,
        conditions: &[DeploymentCondition],
    ) -> bool {
        let stored = self.deployments.get(&ObjectRef::from(d));
        stored
            .and_then(|s| s.status.clone())
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            == conditions
    }
}
