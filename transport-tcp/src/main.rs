//! The `overlay-network` binary.

#![forbid(unsafe_code)]

fn main() {
    eprintln!("overlay-network: the daemon is not built yet (see the open issues)");
    std::process::exit(2);
}
