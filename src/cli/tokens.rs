//! `labelloop tokens create`: make an API token; only its hash is stored.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{EXIT_STORE, EXIT_USAGE};
use crate::api::auth::{hash_token, new_token, Role};
use crate::service::config::ServeConfig;
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Create a token and print it once (it cannot be shown again).
    Create(CreateArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// admin (everything), annotator (read items, write annotations) or predictor (predict only).
    #[arg(long)]
    role: String,
    /// A name to recognise the token by.
    #[arg(long, default_value = "token")]
    name: String,
    /// Database (as for `serve`).
    #[arg(long)]
    db: Option<String>,
    /// Folder of the embedded database (as for `serve`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Server config file (its `db` and `data_dir` are used).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(cmd: TokensCommand) -> ExitCode {
    let TokensCommand::Create(args) = cmd;
    let Some(role) = Role::parse(&args.role) else {
        eprintln!(
            "error: unknown role {:?}; use admin, annotator or predictor",
            args.role
        );
        return ExitCode::from(EXIT_USAGE);
    };
    let mut config = match &args.config {
        Some(p) => match ServeConfig::from_file(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => ServeConfig::default(),
    };
    if args.db.is_some() {
        config.db = args.db.clone();
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    let token = match new_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let store = Store::connect(&config.db_url()).await?;
        store
            .create_token(&args.name, role.as_str(), &hash_token(&token))
            .await?;
        store.close().await;
        Ok::<_, crate::store::StoreError>(())
    });
    match result {
        Ok(()) => {
            println!("{token}");
            eprintln!(
                "created {} token {:?}; it is shown only now",
                role.as_str(),
                args.name
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_STORE)
        }
    }
}
