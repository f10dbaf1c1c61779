//! A project's progress at a glance, for the project list of the review page
//! and for dashboards: how many items the machine decided, how many people
//! labeled, how many wait, and the precision the current calibration can
//! vouch for.

use serde::Serialize;

use super::app::App;
use super::box_calibration;
use super::calibration::{Stored, WithLeaked};
use super::error::{ServiceError, ServiceResult};
use crate::store::Guarantee;

/// `GET /v1/projects/{id}/progress`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub project_id: i64,
    pub total: i64,
    /// Labeled by the machine (auto-accepted).
    pub auto_accepted: i64,
    /// Labeled by people.
    pub human: i64,
    /// Waiting for a human label.
    pub needs_review: i64,
    /// A lower tier's label waiting for a top-tier confirmation.
    pub needs_confirmation: i64,
    /// Not pre-labeled yet, and failed to pre-label.
    pub pending: i64,
    pub failed: i64,
    /// Screened outliers a person rejected: out of the data (status `rejected`).
    pub rejected: i64,
    /// Audit items still waiting for a label, and audit labels given.
    pub audit_pending: i64,
    pub audit_spent: i64,
    pub precision_target: f64,
    /// What vouches for the auto-accepted labels: `calibrated`,
    /// `no_guarantee` (an explicit fixed threshold, before the first fit) or
    /// `awaiting_calibration` (nothing auto-accepted yet).
    pub guarantee: Guarantee,
    /// The calibration in force; `null` before the first fit, and then the
    /// figures below are `null` too (a fixed threshold vouches for nothing).
    pub calibration_version: Option<i64>,
    /// Share of machine-decided items auto-accepted under it.
    pub coverage: Option<f64>,
    /// Audit precision of the auto-accepted audit items, and its lower bound
    /// at 1 − δ.
    pub precision: Option<f64>,
    pub lower_bound: Option<f64>,
    /// The same figures with the audit labels of leaked items counted
    /// (the ones above leave them out); absent on a box calibration and on
    /// versions fitted before it was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with_leaked: Option<WithLeaked>,
}

pub async fn progress(app: &App, project_id: i64) -> ServiceResult<Progress> {
    let project = app.store.get_project(project_id).await?;
    let counts = app.store.status_counts(project_id).await?;
    let audit = app.store.audit_counts(project_id).await?;
    // (version, coverage, precision, lower bound, with leaked items) of the version in force.
    let fit = match app.store.current_calibration(project_id).await? {
        Some(row) => Some(match box_calibration::parse(&row.body) {
            Some(b) => (
                row.version,
                b.coverage,
                b.precision,
                b.fdp_upper.map(|u| 1.0 - u),
                None,
            ),
            None => {
                let s = serde_json::from_str::<Stored>(&row.body).map_err(|e| {
                    ServiceError::internal(format!("calibration {}: {e}", row.version))
                })?;
                (
                    row.version,
                    s.coverage,
                    s.precision,
                    s.lower_bound,
                    s.with_leaked,
                )
            }
        }),
        None => None,
    };
    Ok(Progress {
        project_id,
        total: counts.total,
        auto_accepted: counts.auto_accepted,
        human: counts.labeled,
        needs_review: counts.needs_review,
        needs_confirmation: counts.needs_confirmation,
        pending: counts.pending,
        failed: counts.failed,
        rejected: counts.rejected,
        audit_pending: audit.pending,
        audit_spent: audit.spent,
        precision_target: project.precision_target,
        guarantee: Guarantee::of(fit.as_ref().map(|f| f.0), project.threshold),
        calibration_version: fit.as_ref().map(|f| f.0),
        coverage: fit.as_ref().map(|f| f.1),
        precision: fit.as_ref().and_then(|f| f.2),
        lower_bound: fit.as_ref().and_then(|f| f.3),
        with_leaked: fit.and_then(|f| f.4),
    })
}
