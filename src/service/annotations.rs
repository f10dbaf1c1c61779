//! Taking an annotation back: the review page's undo, written once for
//! every adapter.

use serde::Serialize;

use super::app::App;
use super::error::{ServiceError, ServiceResult};
use crate::store::ItemRecord;

/// The answer to a delete: which annotation went, and the item as it is now
/// (back to `needs_review` when it was its only annotation).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub deleted: i64,
    pub item: ItemRecord,
}

/// Delete annotation `id` as `by`. Only its author or an admin may: a
/// label is evidence for calibration and agreement, and one annotator must
/// not be able to erase another's. A deleted id is gone: deleting it again
/// is `not_found`.
pub async fn delete(app: &App, id: i64, by: &str, admin: bool) -> ServiceResult<Deleted> {
    let a = app.store.annotation(id).await?;
    if !admin && a.annotator != by {
        return Err(ServiceError::forbidden(format!(
            "annotation {id} was written by another annotator; only its author or an admin may delete it"
        )));
    }
    let project = app.store.get_project(a.project_id).await?;
    // Leased back to the author: the undone item is theirs to answer again.
    app.store
        .delete_annotation(id, &a.annotator, project.settings.review_lease_ms())
        .await?;
    // Screening (issue 25): labels copied from this one follow the undo.
    super::screening::after_unlabel(app, a.item_id).await;
    Ok(Deleted {
        deleted: id,
        item: app.store.get_item(a.item_id).await?,
    })
}
