//! Rebuilds the server when a file of the web UI (`ui/`, embedded by rust-embed) is added,
//! changed or removed.

fn main() {
    println!("cargo:rerun-if-changed=ui");
}
