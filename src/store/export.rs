//! The items an export reads (issue 25): never a `rejected` one (an
//! outlier a person rejected), and none of the flagged kinds the export's
//! [`Exclude`] names, by the last screen's issues. Keyset paging as
//! [`Store::list_items`]: the filter is in the statement, so a page is
//! still `limit` items while there are that many.

use super::{ItemRecord, Result, Store, ITEM_COLUMNS};

/// The status of an item a person rejected (an outlier confirmed out of
/// domain): it leaves every export.
pub const REJECTED: &str = "rejected";

/// Flagged items an export leaves out, by the last screen's issues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exclude {
    /// Members of a duplicate group (exact or near) other than its
    /// representative: the representative stays.
    pub duplicates: bool,
    /// Items with a `leak` issue (copies of an earlier split's item, or of
    /// the reference project's).
    pub leaked: bool,
    pub outliers: bool,
    /// Any `quality:*` issue.
    pub quality: bool,
    /// Any `pii:*` issue.
    pub pii: bool,
    /// Items with a `conflict` issue (two people labeled a group otherwise).
    pub conflicts: bool,
    /// Items the screen holds from auto-acceptance.
    pub held: bool,
}

impl Exclude {
    /// The names `exclude=` takes, in order.
    pub const NAMES: [&'static str; 7] = [
        "duplicates",
        "leaked",
        "outliers",
        "quality",
        "pii",
        "conflicts",
        "held",
    ];

    /// Set the flag named `name` (one of [`Exclude::NAMES`]); false for any other name.
    pub fn set(&mut self, name: &str) -> bool {
        let flag = match name {
            "duplicates" => &mut self.duplicates,
            "leaked" => &mut self.leaked,
            "outliers" => &mut self.outliers,
            "quality" => &mut self.quality,
            "pii" => &mut self.pii,
            "conflicts" => &mut self.conflicts,
            "held" => &mut self.held,
            _ => return false,
        };
        *flag = true;
        true
    }

    /// Whether it leaves anything out.
    pub fn any(&self) -> bool {
        *self != Exclude::default()
    }

    /// The statement's condition on `items` (empty when nothing is left
    /// out): no issue of the excluded kinds. Constant text, no user input.
    fn condition(&self) -> String {
        let mut kinds: Vec<&str> = Vec::new();
        if self.duplicates {
            kinds.push(
                "(s.kind IN ('exact_duplicate', 'near_duplicate') AND s.of_item IS NOT NULL)",
            );
        }
        for (on, kind) in [
            (self.leaked, "s.kind = 'leak'"),
            (self.outliers, "s.kind = 'outlier'"),
            (self.quality, "s.kind LIKE 'quality:%'"),
            (self.pii, "s.kind LIKE 'pii:%'"),
            (self.conflicts, "s.kind = 'conflict'"),
            (self.held, "s.hold = 1"),
        ] {
            if on {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            return String::new();
        }
        format!(
            " AND NOT EXISTS (SELECT 1 FROM screen_issues s WHERE s.item_id = items.id AND ({}))",
            kinds.join(" OR ")
        )
    }
}

impl Store {
    /// One export page: the project's items after `cursor` in id order,
    /// `rejected` ones and those `exclude` names left out, with their
    /// annotations.
    pub async fn export_items(
        &self,
        project_id: i64,
        exclude: &Exclude,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<ItemRecord>> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE project_id = $1 AND id > $2 AND status <> '{REJECTED}'{} \
             ORDER BY id LIMIT {}",
            exclude.condition(),
            limit.clamp(1, 1000)
        );
        let mut items = with_pool!(self, |p| {
            let rows = sqlx::query(&sql)
                .bind(project_id)
                .bind(cursor)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(ItemRecord::from_row)
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })?;
        self.attach_annotations(&mut items).await?;
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_sets_one_flag_and_others_are_refused() {
        for name in Exclude::NAMES {
            let mut e = Exclude::default();
            assert!(e.set(name), "{name}");
            assert!(e.any());
            assert!(e.condition().starts_with(" AND NOT EXISTS"), "{name}");
        }
        let mut e = Exclude::default();
        assert!(!e.set("dupes"));
        assert!(!e.any());
        assert_eq!(e.condition(), "");
    }
}
