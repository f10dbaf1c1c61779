//! AFL++ target: `model::manifest::Manifest::load` on an arbitrary
//! `model.toml`.
//!
//! `Manifest` is only reachable through `load(dir)` (parsing plus the
//! consistency checks), so each input is written to a temporary folder,
//! ideally on tmpfs (`TMPDIR=/dev/shm`). An accepted manifest is checked
//! further: the per-channel normalisation the preprocessor reads must not
//! panic for any channel, and re-serialising it must load again.

use labelloop::model::manifest::{InputSpec, Manifest, MANIFEST_FILE};

fn main() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join(MANIFEST_FILE);
    afl::fuzz!(|data: &[u8]| {
        std::fs::write(&path, data).expect("write the manifest");
        if let Ok(m) = Manifest::load(dir.path()) {
            assert!(!m.outputs.is_empty());
            if let InputSpec::Image(img) = &m.input {
                assert!(img.channels == 1 || img.channels == 3);
                for c in 0..img.channels as usize {
                    let _ = img.channel_norm(c);
                }
            }
            let text = toml::to_string(&m).expect("an accepted manifest serialises");
            std::fs::write(&path, text).expect("write the manifest");
            Manifest::load(dir.path()).expect("a re-serialised manifest loads");
        }
    });
}
