// sqlx::migrate! embeds migrations/ at compile time; rebuild when a migration
// is added or changed, even if no Rust source changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
