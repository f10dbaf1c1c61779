//! `labelloop labelstudio sync`: start a bulk pre-annotation of a Label
//! Studio project on a running server (the job runs there, so it survives
//! this command and resumes after a server restart) and follow its progress.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::EXIT_USAGE;

#[derive(Subcommand, Debug)]
pub enum LabelStudioCommand {
    /// Pre-label every task of a Label Studio project and write the predictions back, as a job.
    Sync(SyncArgs),
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// The labelloop server.
    #[arg(long, env = "LABELLOOP_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// An admin API token for the labelloop server (unset: a --no-auth server).
    #[arg(long, env = "LABELLOOP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The labelloop project to pre-label with.
    #[arg(long)]
    project: i64,
    /// Label Studio's URL (its host must be in the server's ls_hosts).
    #[arg(long)]
    url: String,
    /// A Label Studio token: legacy, or a personal access token.
    #[arg(long, env = "LABEL_STUDIO_TOKEN", hide_env_values = true)]
    ls_token: String,
    /// The Label Studio project id.
    #[arg(long)]
    ls_project: i64,
    /// Start the job and return at once instead of following it.
    #[arg(long)]
    no_wait: bool,
}

pub fn run(cmd: LabelStudioCommand) -> ExitCode {
    let LabelStudioCommand::Sync(args) = cmd;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sync(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, why)) => {
            eprintln!("error: {why}");
            ExitCode::from(code)
        }
    }
}

async fn call(args: &SyncArgs, req: reqwest::RequestBuilder) -> Result<Value, (u8, String)> {
    let req = match &args.token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let resp = req
        .send()
        .await
        .map_err(|e| (1, format!("cannot reach {}: {e}", args.server)))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = body["error"]["message"].as_str().unwrap_or("no message");
        let code = if status.is_client_error() {
            EXIT_USAGE
        } else {
            1
        };
        return Err((code, format!("{status}: {msg}")));
    }
    Ok(body)
}

async fn sync(args: &SyncArgs) -> Result<(), (u8, String)> {
    let client = reqwest::Client::new();
    let base = args.server.trim_end_matches('/');
    let job = call(
        args,
        client
            .post(format!(
                "{base}/v1/projects/{}/labelstudio/sync",
                args.project
            ))
            .json(&json!({"url": args.url, "token": args.ls_token, "ls_project": args.ls_project})),
    )
    .await?;
    let id = job["id"].as_i64().unwrap_or(0);
    println!("job {id} started");
    if args.no_wait {
        return Ok(());
    }
    loop {
        let j = call(args, client.get(format!("{base}/v1/jobs/{id}"))).await?;
        let state = j["state"].as_str().unwrap_or("");
        eprintln!("{state}: {} of {} tasks written", j["done"], j["total"]);
        match state {
            "done" => {
                println!(
                    "job {id} done: {} predictions written to Label Studio",
                    j["done"]
                );
                return Ok(());
            }
            "failed" => return Err((1, format!("job {id} failed (see the server log)"))),
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}
