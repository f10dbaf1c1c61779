//! Taking an annotation back (the review page's undo), and reading an item's
//! stored content (the page shows the image or text being labeled).

use sqlx::Row;

use super::{now_ms, Content, Result, Store, StoreError};

/// Who wrote an annotation and on which item, for the author check before
/// a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationRef {
    pub id: i64,
    pub item_id: i64,
    pub project_id: i64,
    pub annotator: String,
}

impl Store {
    pub async fn annotation(&self, id: i64) -> Result<AnnotationRef> {
        let row = with_pool!(self, |p| {
            sqlx::query(
                "SELECT a.id, a.item_id, i.project_id, a.annotator FROM annotations a \
                 JOIN items i ON i.id = a.item_id WHERE a.id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await?
            .map(|r| {
                Ok::<_, sqlx::Error>(AnnotationRef {
                    id: r.try_get(0)?,
                    item_id: r.try_get(1)?,
                    project_id: r.try_get(2)?,
                    annotator: r.try_get(3)?,
                })
            })
            .transpose()
        })?;
        row.ok_or_else(|| StoreError::NotFound(format!("annotation {id}")))
    }

    /// Delete one annotation and put its item back as the remaining
    /// annotations say, in one transaction: the latest remaining label is the
    /// final one; with none left the item waits for review again, leased to
    /// `lease_to` for `lease_ms` so that whoever undid it answers it again
    /// before anyone else is offered it. A second delete of the same id is
    /// `NotFound` (also when two race: only one removes the row).
    pub async fn delete_annotation(&self, id: i64, lease_to: &str, lease_ms: i64) -> Result<()> {
        let now = now_ms();
        let deleted = with_pool!(self, |p| {
            async {
            let mut tx = p.begin().await?;
            let item: Option<i64> =
                sqlx::query_scalar("DELETE FROM annotations WHERE id = $1 RETURNING item_id")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(item) = item else {
                return Ok(false);
            };
            let latest: Option<String> = sqlx::query_scalar(
                "SELECT label FROM annotations WHERE item_id = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(item)
            .fetch_optional(&mut *tx)
            .await?;
            match latest {
                Some(label) => {
                    sqlx::query(
                        "UPDATE items SET status = 'labeled', final_label = $1, final_source = 'human', \
                         resolution = NULL WHERE id = $2",
                    )
                    .bind(label)
                    .bind(item)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "UPDATE items SET status = 'needs_review', final_label = NULL, final_source = NULL, \
                         resolution = NULL, review_owner = $1, review_until = $2 WHERE id = $3",
                    )
                    .bind(lease_to)
                    .bind(now + lease_ms)
                    .bind(item)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        }
        .await
        })?;
        if deleted {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("annotation {id}")))
        }
    }

    /// An item's project and stored content (bytes, text or the path under
    /// the data root), without the rest of the record.
    pub async fn item_content(&self, id: i64) -> Result<(i64, Content)> {
        let row = with_pool!(self, |p| {
            sqlx::query("SELECT project_id, kind, text, image, path FROM items WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?
                .map(|r| {
                    Ok::<_, sqlx::Error>((
                        r.try_get::<i64, _>(0)?,
                        Content::from_columns(
                            r.try_get(1)?,
                            r.try_get(2)?,
                            r.try_get(3)?,
                            r.try_get(4)?,
                        ),
                    ))
                })
                .transpose()
        })?;
        row.ok_or_else(|| StoreError::NotFound(format!("item {id}")))
    }
}
