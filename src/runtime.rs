//! Finding and loading the ONNX Runtime shared library, and building sessions.
//!
//! We build `ort` with `load-dynamic`, so nothing links at build time and the
//! library is found at run time. Only one ORT environment may exist per
//! process, so it lives in a `OnceLock` and every session is built from it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

/// The command that installs the library into the project-local folder.
pub const SETUP_COMMAND: &str = "scripts/setup.sh";

/// Project-local, git-ignored folder that `scripts/setup.sh` fills.
pub const PROJECT_LIB_DIR: &str = ".ort";

/// File names we accept for the library, most specific first. The PyPI wheel
/// ships only the versioned name.
pub const LIBRARY_NAMES: &[&str] = &["libonnxruntime.so.1.31.1", "libonnxruntime.so"];

/// Environment variable that overrides the search.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the ONNX Runtime library was not found (looked in: {searched}). \
         Run `{SETUP_COMMAND}` to install it into `{PROJECT_LIB_DIR}/`, \
         or point {DYLIB_ENV} at libonnxruntime.so"
    )]
    NotFound { searched: String },
    #[error("{DYLIB_ENV} points at {path}, which does not exist. Fix the variable, or unset it and run `{SETUP_COMMAND}`")]
    EnvPathMissing { path: PathBuf },
    #[error("failed to load ONNX Runtime from {path}: {message}. Re-run `{SETUP_COMMAND}`")]
    Load { path: PathBuf, message: String },
    #[error("failed to create an ONNX Runtime session for {path}: {message}")]
    Session { path: PathBuf, message: String },
}

/// Where to look, in order. Kept separate from the environment so it can be tested.
#[derive(Debug, Clone, Default)]
pub struct SearchPath {
    pub env_override: Option<PathBuf>,
    pub exe_dir: Option<PathBuf>,
    pub project_dirs: Vec<PathBuf>,
}

impl SearchPath {
    /// The search path for this process: `ORT_DYLIB_PATH`, then the executable's
    /// folder, then the project-local `.ort/` (found from the executable's
    /// ancestors, so `target/release/labelloop` finds `./.ort`, and from the
    /// working directory).
    pub fn from_process() -> Self {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let mut project_dirs = Vec::new();
        if let Some(dir) = &exe_dir {
            // target/{debug,release}[/deps] -> project root
            for ancestor in dir.ancestors().skip(1).take(4) {
                project_dirs.push(ancestor.join(PROJECT_LIB_DIR));
            }
        }
        if let Ok(cwd) = std::env::current_dir() {
            project_dirs.push(cwd.join(PROJECT_LIB_DIR));
        }
        project_dirs.dedup();
        SearchPath {
            env_override: std::env::var_os(DYLIB_ENV).map(PathBuf::from),
            exe_dir,
            project_dirs,
        }
    }

    /// Resolve the library path, or explain where we looked.
    pub fn locate(&self) -> Result<PathBuf, RuntimeError> {
        if let Some(path) = &self.env_override {
            return if path.is_file() {
                Ok(path.clone())
            } else {
                Err(RuntimeError::EnvPathMissing { path: path.clone() })
            };
        }
        let dirs = self.exe_dir.iter().chain(self.project_dirs.iter());
        let mut searched = Vec::new();
        for dir in dirs {
            for name in LIBRARY_NAMES {
                let candidate = dir.join(name);
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
            searched.push(dir.display().to_string());
        }
        Err(RuntimeError::NotFound {
            searched: searched.join(", "),
        })
    }
}

static ENVIRONMENT: OnceLock<Result<Environment, RuntimeError>> = OnceLock::new();

/// The process-wide ORT environment, loading the library on first use.
pub fn environment() -> Result<&'static Environment, RuntimeError> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = SearchPath::from_process().locate()?;
            tracing::debug!(path = %path.display(), "loading ONNX Runtime");
            let builder = ort::init_from(&path).map_err(|e| RuntimeError::Load {
                path: path.clone(),
                message: e.to_string(),
            })?;
            builder
                .with_name("labelloop")
                .build()
                .map_err(|e| RuntimeError::Load {
                    path,
                    message: e.to_string(),
                })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Session settings that matter for throughput.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// Intra-op threads for one session run.
    pub intra_threads: usize,
    /// Let idle intra-op threads spin before sleeping. Fastest when ONNX
    /// Runtime has the cores to itself; when preprocessing runs beside it on
    /// the same cores, spinning threads steal the time decoding needs.
    pub spinning: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            intra_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            spinning: true,
        }
    }
}

/// Build one session for the model at `path`.
pub fn create_session(path: &Path, opts: SessionOptions) -> Result<Session, RuntimeError> {
    build_session(path, opts, GraphOptimizationLevel::Level3)
}

/// A session only to read the graph's inputs, outputs and metadata: no
/// graph optimisation and one thread. Optimising a graph is what a session
/// spends most memory on while it is built; `serve` checks every model at
/// start, and with optimised checking sessions its peak RSS came from that
/// start, not from the work (294 MiB peak against 150 MiB right after).
pub fn inspect_session(path: &Path) -> Result<Session, RuntimeError> {
    let opts = SessionOptions {
        intra_threads: 1,
        spinning: false,
    };
    build_session(path, opts, GraphOptimizationLevel::Disable)
}

fn build_session(
    path: &Path,
    opts: SessionOptions,
    level: GraphOptimizationLevel,
) -> Result<Session, RuntimeError> {
    let env = environment()?;
    let err = |e: &dyn std::fmt::Display| RuntimeError::Session {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let builder = Session::builder(env).map_err(|e| err(&e))?;
    let builder = builder
        .with_optimization_level(level)
        .map_err(|e| err(&e))?;
    let builder = builder
        .with_intra_threads(opts.intra_threads.max(1))
        .map_err(|e| err(&e))?;
    let builder = builder.with_inter_threads(1).map_err(|e| err(&e))?;
    let mut builder = builder
        .with_intra_op_spinning(opts.spinning)
        .map_err(|e| err(&e))?;
    builder.commit_from_file(path).map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_names_setup_command() {
        let dir = tempfile::tempdir().unwrap();
        let search = SearchPath {
            env_override: None,
            exe_dir: Some(dir.path().to_path_buf()),
            project_dirs: vec![dir.path().join(".ort")],
        };
        let err = search.locate().unwrap_err().to_string();
        assert!(err.contains(SETUP_COMMAND), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn env_override_wins_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libonnxruntime.so.1.31.1");
        std::fs::write(&lib, b"x").unwrap();
        let other = tempfile::tempdir().unwrap();
        let other_lib = other.path().join("libonnxruntime.so");
        std::fs::write(&other_lib, b"x").unwrap();
        let search = SearchPath {
            env_override: Some(other_lib.clone()),
            exe_dir: Some(dir.path().to_path_buf()),
            project_dirs: vec![],
        };
        assert_eq!(search.locate().unwrap(), other_lib);
        let search = SearchPath {
            env_override: Some(other.path().join("nope.so")),
            ..search
        };
        assert!(matches!(
            search.locate(),
            Err(RuntimeError::EnvPathMissing { .. })
        ));
    }

    #[test]
    fn exe_dir_before_project_dir() {
        let exe = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        std::fs::write(exe.path().join("libonnxruntime.so.1.31.1"), b"x").unwrap();
        std::fs::write(project.path().join("libonnxruntime.so.1.31.1"), b"x").unwrap();
        let search = SearchPath {
            env_override: None,
            exe_dir: Some(exe.path().to_path_buf()),
            project_dirs: vec![project.path().to_path_buf()],
        };
        assert!(search.locate().unwrap().starts_with(exe.path()));
        let search = SearchPath {
            exe_dir: None,
            ..search
        };
        assert!(search.locate().unwrap().starts_with(project.path()));
    }
}
