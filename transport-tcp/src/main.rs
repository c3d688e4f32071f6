//! The `overlay-network` binary: parses the command line and runs the subcommand; any
//! error is printed on one line and the exit status is 1.

#![forbid(unsafe_code)]

use clap::Parser;
use overlay_transport_tcp::cli::{self, Cli};

fn main() {
    if let Err(e) = cli::run(Cli::parse()) {
        eprintln!("overlay-network: error: {e}");
        std::process::exit(1);
    }
}
