// Without this, `sqlx::migrate!` would silently leave a newly added migration out of the binary.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
