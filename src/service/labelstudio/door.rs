//! Who may come through a project's Label Studio door, and who they say
//! they are.
//!
//! Label Studio cannot send labelloop's bearer tokens, so with token auth
//! on, the `/labelstudio/{project}` routes need HTTP Basic credentials
//! (Label Studio's ML-backend "Basic Authentication" setting): a
//! per-project pair made by an admin and shown once, or the server-wide
//! pair from the settings. Without either they are refused, unless the
//! server was started with the loudly logged `ls_open` opt-out.
//!
//! Annotator names in webhooks are Label Studio's claims, not identities
//! labelloop verified: they are recorded as `ls:<name>`, which no token
//! holder's name can equal, and get no tier until an admin grants one.

use std::time::{Duration, Instant};

use super::super::error::{Code, ServiceError, ServiceResult};
use crate::service::app::App;
use crate::service::secret::{constant_time_eq, hash_token, new_token};

/// How the caller came through the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LsCaller {
    /// `--no-auth` on loopback: everything is open to the local user.
    Local,
    /// Sent the project's credentials (or the server-wide pair).
    Authenticated,
    /// No credentials, let in by the `ls_open` opt-out.
    Open,
}

impl LsCaller {
    /// Whether the caller proved who it is (or the server trusts everyone local).
    pub fn trusted(self) -> bool {
        !matches!(self, LsCaller::Open)
    }
}

/// A project's backend credentials, as shown once at creation.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Credentials {
    /// The Basic auth user to enter in Label Studio's ML backend settings.
    pub username: String,
    /// The Basic auth password: shown only now; only its SHA-256 is kept.
    pub password: String,
    /// The backend URL's path on this server, to append to its address.
    pub backend_path: String,
    /// The same path with the password as its key: connect Label Studio to
    /// this one, and every call it makes is authenticated, the webhook it
    /// creates on connect included (that webhook sends no Basic auth).
    pub keyed_backend_path: String,
}

/// How long a project's stored credentials are kept in memory. A rotation
/// in this process forgets them at once; another replica's, within this.
const KEEP: Duration = Duration::from_secs(5);

/// Make (or rotate) the project's backend credentials.
pub async fn create_credentials(app: &App, project_id: i64) -> ServiceResult<Credentials> {
    app.store.get_project(project_id).await?;
    let password = new_token().map_err(ServiceError::internal)?;
    let username = format!("labelloop-{project_id}");
    app.store
        .ls_set_credentials(project_id, &username, &hash_token(&password))
        .await?;
    app.labelstudio.forget_credentials(project_id);
    tracing::info!(
        project = project_id,
        "Label Studio backend credentials created"
    );
    Ok(Credentials {
        keyed_backend_path: format!("/labelstudio/{project_id}/key/{password}"),
        username,
        password,
        backend_path: format!("/labelstudio/{project_id}"),
    })
}

/// Whether `user`/`password` are the project's backend credentials; with
/// no user (the key of a keyed backend URL), whether it is the password.
pub async fn check_credentials(
    app: &App,
    project_id: i64,
    user: Option<&str>,
    password: &str,
) -> ServiceResult<bool> {
    let kept = app.labelstudio.kept_credentials(project_id, KEEP);
    let stored = match kept {
        Some(c) => c,
        None => {
            let c = app.store.ls_credentials(project_id).await?;
            app.labelstudio
                .keep_credentials(project_id, c.clone(), Instant::now());
            c
        }
    };
    Ok(stored.is_some_and(|(u, hash)| {
        let given = hash_token(password);
        // Both compared in full, so timing tells nothing about which was wrong.
        let user_ok = user.is_none_or(|user| constant_time_eq(u.as_bytes(), user.as_bytes()));
        user_ok & constant_time_eq(hash.as_bytes(), given.as_bytes())
    }))
}

/// Longest annotator name a webhook may carry, in characters (an e-mail
/// address is at most 254).
pub const MAX_NAME_CHARS: usize = 254;

/// A Label Studio user's name as labelloop records it: `ls:` and the name,
/// which must be non-empty, at most `MAX_NAME_CHARS`, and free of control
/// characters and markup.
pub fn ls_identity(raw: &str) -> ServiceResult<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(bad_name("is empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(bad_name(&format!(
            "is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '<' | '>' | '"' | '`'))
    {
        return Err(bad_name("holds control characters or markup (<, >, \", `)"));
    }
    Ok(format!("ls:{name}"))
}

fn bad_name(why: &str) -> ServiceError {
    ServiceError::new(
        Code::BadWebhook,
        format!("the annotator's name from Label Studio {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_prefixed_bounded_and_clean() {
        assert_eq!(
            ls_identity(" alice@example.com ").unwrap(),
            "ls:alice@example.com"
        );
        assert!(ls_identity("").is_err());
        assert!(ls_identity("   ").is_err());
        assert!(ls_identity(&"a".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(ls_identity(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(ls_identity("a\u{7}b").is_err());
        assert!(ls_identity("<script>alert(1)</script>").is_err());
        // A token holder's name can never be produced.
        assert!(ls_identity("alice").unwrap().starts_with("ls:"));
    }
}
