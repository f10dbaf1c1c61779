//! Label Studio state: each project's connection (host and token from
//! `/setup`), the Label Studio annotations recorded, bulk syncs and the
//! predictions they wrote back. Items themselves are ordinary items keyed
//! by `ls-task-<id>` client ids.

use sqlx::Row;

use super::{now_ms, ItemRecord, Result, Store, StoreError, ITEM_COLUMNS};

/// Where a project's Label Studio is, and the token for its data.
#[derive(Clone)]
pub struct LsConnection {
    pub hostname: String,
    /// Secret: never logged, listed or exported.
    pub access_token: String,
    pub ls_project: Option<String>,
}

impl std::fmt::Debug for LsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LsConnection")
            .field("hostname", &self.hostname)
            .field("access_token", &"***")
            .field("ls_project", &self.ls_project)
            .finish()
    }
}

/// One recorded Label Studio annotation.
#[derive(Debug, Clone)]
pub struct LsAnnotation {
    pub ls_annotation_id: i64,
    pub ls_task_id: i64,
    pub item_id: i64,
    pub annotation_id: i64,
}

/// A bulk sync's durable state.
#[derive(Clone)]
pub struct LsSync {
    pub job_id: i64,
    pub project_id: i64,
    pub url: String,
    pub token: String,
    pub ls_project: i64,
    pub phase: String,
    pub next_page: i64,
    pub tasks: i64,
}

impl std::fmt::Debug for LsSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LsSync")
            .field("job_id", &self.job_id)
            .field("url", &self.url)
            .field("token", &"***")
            .field("phase", &self.phase)
            .finish()
    }
}

/// The client id of a Label Studio task's item.
pub fn ls_client_id(task_id: i64) -> String {
    format!("ls-task-{task_id}")
}

impl Store {
    pub async fn ls_save_connection(
        &self,
        project_id: i64,
        hostname: &str,
        token: &str,
        ls_project: Option<&str>,
        label_config: Option<&str>,
    ) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO ls_connections (project_id, hostname, access_token, ls_project, label_config, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (project_id) DO UPDATE SET hostname = excluded.hostname, \
             access_token = excluded.access_token, ls_project = excluded.ls_project, \
             label_config = COALESCE(excluded.label_config, ls_connections.label_config), updated_at = excluded.updated_at"
        )
        .bind(project_id)
        .bind(hostname)
        .bind(token)
        .bind(ls_project)
        .bind(label_config)
        .bind(now_ms())
        .execute(p)
        .await
        .map(|_| ())
        })
    }

    pub async fn ls_connection(&self, project_id: i64) -> Result<Option<LsConnection>> {
        with_pool!(self, |p| {
            sqlx::query(
                "SELECT hostname, access_token, ls_project FROM ls_connections WHERE project_id = $1",
            )
            .bind(project_id)
            .fetch_optional(p)
            .await?
            .map(|r| {
                Ok::<_, sqlx::Error>(LsConnection {
                    hostname: r.try_get(0)?,
                    access_token: r.try_get(1)?,
                    ls_project: r.try_get(2)?,
                })
            })
            .transpose()
        })
    }

    /// The labeling config `/setup` last sent, if any.
    pub async fn ls_label_config(&self, project_id: i64) -> Result<Option<String>> {
        with_pool!(self, |p| {
            sqlx::query("SELECT label_config FROM ls_connections WHERE project_id = $1")
                .bind(project_id)
                .fetch_optional(p)
                .await?
                .map(|r| r.try_get::<Option<String>, _>(0))
                .transpose()
                .map(Option::flatten)
        })
    }

    /// The items of these client ids that exist in the project.
    pub async fn items_by_client_ids(
        &self,
        project_id: i64,
        client_ids: &[String],
    ) -> Result<Vec<ItemRecord>> {
        let mut out = Vec::new();
        for chunk in client_ids.chunks(500) {
            let mut sql = self.params(&format!(
                "SELECT {ITEM_COLUMNS} FROM items WHERE project_id = "
            ));
            sql.param()
                .push(" AND client_id IN (")
                .list(chunk.len())
                .push(") ORDER BY id");
            let mut items = with_pool!(self, |p| {
                let mut q = sqlx::query(&sql.sql).bind(project_id);
                for c in chunk {
                    q = q.bind(c);
                }
                q.fetch_all(p)
                    .await?
                    .iter()
                    .map(ItemRecord::from_row)
                    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            })?;
            self.attach_annotations(&mut items).await?;
            out.extend(items);
        }
        Ok(out)
    }

    /// The id of the newest annotation `annotator` gave `item_id`.
    pub async fn latest_annotation_id(&self, item_id: i64, annotator: &str) -> Result<i64> {
        let id: Option<i64> = with_pool!(self, |p| sqlx::query(
            "SELECT MAX(id) FROM annotations WHERE item_id = $1 AND annotator = $2"
        )
        .bind(item_id)
        .bind(annotator)
        .fetch_one(p)
        .await
        .and_then(|r| r.try_get(0)))?;
        id.ok_or_else(|| StoreError::NotFound(format!("annotation on item {item_id}")))
    }

    pub async fn ls_record_annotation(&self, project_id: i64, a: &LsAnnotation) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO ls_annotations (project_id, ls_annotation_id, ls_task_id, item_id, annotation_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (project_id, ls_annotation_id) DO UPDATE SET \
             annotation_id = excluded.annotation_id, item_id = excluded.item_id, ls_task_id = excluded.ls_task_id"
        )
        .bind(project_id)
        .bind(a.ls_annotation_id)
        .bind(a.ls_task_id)
        .bind(a.item_id)
        .bind(a.annotation_id)
        .bind(now_ms())
        .execute(p)
        .await
        .map(|_| ())
        })
    }

    pub async fn ls_annotation(
        &self,
        project_id: i64,
        ls_annotation_id: i64,
    ) -> Result<Option<LsAnnotation>> {
        with_pool!(self, |p| {
            sqlx::query(
                "SELECT ls_annotation_id, ls_task_id, item_id, annotation_id FROM ls_annotations \
                 WHERE project_id = $1 AND ls_annotation_id = $2",
            )
            .bind(project_id)
            .bind(ls_annotation_id)
            .fetch_optional(p)
            .await?
            .map(|r| {
                Ok::<_, sqlx::Error>(LsAnnotation {
                    ls_annotation_id: r.try_get(0)?,
                    ls_task_id: r.try_get(1)?,
                    item_id: r.try_get(2)?,
                    annotation_id: r.try_get(3)?,
                })
            })
            .transpose()
        })
    }

    /// Every Label Studio annotation recorded for the project, oldest first.
    pub async fn ls_annotations(&self, project_id: i64) -> Result<Vec<LsAnnotation>> {
        with_pool!(self, |p| {
            sqlx::query(
                "SELECT ls_annotation_id, ls_task_id, item_id, annotation_id FROM ls_annotations \
                 WHERE project_id = $1 ORDER BY created_at, ls_annotation_id",
            )
            .bind(project_id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| {
                Ok(LsAnnotation {
                    ls_annotation_id: r.try_get(0)?,
                    ls_task_id: r.try_get(1)?,
                    item_id: r.try_get(2)?,
                    annotation_id: r.try_get(3)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })
    }

    /// Remove one annotation and settle its item again, in one transaction:
    /// the latest remaining annotation becomes the final label, or with none
    /// left the item goes back to review with its prediction.
    pub async fn ls_delete_annotation(&self, project_id: i64, a: &LsAnnotation) -> Result<()> {
        self.ls_delete_annotations(project_id, &[a.ls_annotation_id])
            .await
            .map(|_| ())
    }

    /// Record a box annotation with the set it recorded (`regions`, JSON),
    /// replacing an earlier record of the same Label Studio id (an update).
    /// Its `annotation_id` is 0: a box annotation lives in `regions`.
    pub async fn ls_record_box_annotation(
        &self,
        project_id: i64,
        a: &LsAnnotation,
        regions: &str,
    ) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO ls_annotations (project_id, ls_annotation_id, ls_task_id, item_id, annotation_id, \
                 created_at, regions) VALUES ($1, $2, $3, $4, 0, $5, $6) \
                 ON CONFLICT (project_id, ls_annotation_id) DO UPDATE SET item_id = excluded.item_id, \
                 ls_task_id = excluded.ls_task_id, regions = excluded.regions",
            )
            .bind(project_id)
            .bind(a.ls_annotation_id)
            .bind(a.ls_task_id)
            .bind(a.item_id)
            .bind(now_ms())
            .bind(regions)
            .execute(p)
            .await
            .map(|_| ())
        })
    }

    /// The box annotations among `ls_ids`: (Label Studio id, item, set).
    pub async fn ls_box_annotations(
        &self,
        project_id: i64,
        ls_ids: &[i64],
    ) -> Result<Vec<(i64, i64, String)>> {
        let mut out = Vec::new();
        for chunk in ls_ids.chunks(500) {
            let mut sql = self.params(
                "SELECT ls_annotation_id, item_id, regions FROM ls_annotations WHERE project_id = ",
            );
            sql.param()
                .push(" AND regions IS NOT NULL AND ls_annotation_id IN (")
                .list(chunk.len())
                .push(") ORDER BY ls_annotation_id");
            let rows = with_pool!(self, |p| {
                let mut q = sqlx::query(&sql.sql).bind(project_id);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .collect::<std::result::Result<Vec<(i64, i64, String)>, sqlx::Error>>()
            })?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// The box annotations recorded on an item, oldest first: (Label
    /// Studio id, set).
    pub async fn ls_box_annotations_of_item(
        &self,
        project_id: i64,
        item_id: i64,
    ) -> Result<Vec<(i64, String)>> {
        with_pool!(self, |p| {
            sqlx::query(
                "SELECT ls_annotation_id, regions FROM ls_annotations WHERE project_id = $1 \
                 AND item_id = $2 AND regions IS NOT NULL ORDER BY created_at, ls_annotation_id",
            )
            .bind(project_id)
            .bind(item_id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })
    }

    /// Forget the box annotations among `ls_ids`; returns how many there were.
    pub async fn ls_forget_box_annotations(&self, project_id: i64, ls_ids: &[i64]) -> Result<u64> {
        let mut removed = 0;
        for chunk in ls_ids.chunks(500) {
            let mut sql = self.params("DELETE FROM ls_annotations WHERE project_id = ");
            sql.param()
                .push(" AND regions IS NOT NULL AND ls_annotation_id IN (")
                .list(chunk.len())
                .push(")");
            removed += with_pool!(self, |p| {
                let mut q = sqlx::query(&sql.sql).bind(project_id);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(p).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(removed)
    }

    /// Head versions of a project, oldest first.
    pub async fn head_versions(&self, project_id: i64) -> Result<Vec<i64>> {
        with_pool!(self, |p| {
            sqlx::query("SELECT version FROM heads WHERE project_id = $1 ORDER BY version")
                .bind(project_id)
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<Vec<i64>, sqlx::Error>>()
        })
    }

    // ---- bulk syncs -------------------------------------------------------

    /// Syncs not finished: resumed at start-up.
    pub async fn ls_open_syncs(&self) -> Result<Vec<LsSync>> {
        with_pool!(self, |p| {
            sqlx::query(
                "SELECT job_id, project_id, url, token, ls_project, phase, next_page, tasks FROM ls_syncs \
                 WHERE phase NOT IN ('done', 'failed') ORDER BY job_id",
            )
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| {
                Ok(LsSync {
                    job_id: r.try_get(0)?,
                    project_id: r.try_get(1)?,
                    url: r.try_get(2)?,
                    token: r.try_get(3)?,
                    ls_project: r.try_get(4)?,
                    phase: r.try_get(5)?,
                    next_page: r.try_get(6)?,
                    tasks: r.try_get(7)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })
    }

    /// Move a sync on: its phase, next page and task count, and the job's
    /// progress (`total` tasks, `done` written back).
    pub async fn ls_update_sync(
        &self,
        job_id: i64,
        phase: &str,
        next_page: i64,
        tasks: i64,
        error: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        let finished = matches!(phase, "done" | "failed");
        let state = match phase {
            "done" => "done",
            "failed" => "failed",
            _ => "syncing",
        };
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "UPDATE ls_syncs SET phase = $1, next_page = $2, tasks = $3, error = $4, updated_at = $5 WHERE job_id = $6",
            )
            .bind(phase)
            .bind(next_page)
            .bind(tasks)
            .bind(error)
            .bind(now)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE jobs SET state = $1, total = $2, updated_at = $3, \
                 finished_at = CASE WHEN $4 THEN $3 ELSE finished_at END WHERE id = $5",
            )
            .bind(state)
            .bind(tasks)
            .bind(now)
            .bind(finished)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
    }

    /// Label Studio tasks of the project still waiting for their pre-label.
    pub async fn ls_pending(&self, project_id: i64) -> Result<i64> {
        with_pool!(self, |p| {
            sqlx::query(
            "SELECT COUNT(*) FROM items WHERE project_id = $1 AND status = 'pending' AND client_id LIKE 'ls-task-%'"
        )
        .bind(project_id)
        .fetch_one(p)
        .await
        .and_then(|r| r.try_get(0))
        })
    }

    /// Which of these tasks already hold a prediction of `model_version` written by us.
    pub async fn ls_written(
        &self,
        project_id: i64,
        model_version: &str,
        task_ids: &[i64],
    ) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        for chunk in task_ids.chunks(500) {
            let mut sql = self.params("SELECT ls_task_id FROM ls_written WHERE project_id = ");
            sql.param()
                .push(" AND model_version = ")
                .param()
                .push(" AND ls_task_id IN (")
                .list(chunk.len())
                .push(")");
            let ids = with_pool!(self, |p| {
                let mut q = sqlx::query(&sql.sql).bind(project_id).bind(model_version);
                for t in chunk {
                    q = q.bind(*t);
                }
                q.fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<std::result::Result<Vec<i64>, sqlx::Error>>()
            })?;
            out.extend(ids);
        }
        Ok(out)
    }
}
