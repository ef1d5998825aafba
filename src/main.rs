//! `cargo run`: read the settings, bind, print where we listen, serve forever.

use std::io::{self, Write};
use std::process::ExitCode;

use sse_server::capacity;
use sse_server::classroom::interfaces;
use sse_server::config::{self, Command, Config};
use sse_server::Server;

fn main() -> ExitCode {
    let config = match Config::from_env_and_args() {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        // The error and where to look, not the whole usage: on a small terminal the usage
        // would scroll the error away.
        Err(err) => {
            eprintln!("error: {err}\n{}", config::SEE_HELP);
            return ExitCode::from(2);
        }
    };
    // Caps above what the machine's limits allow are lowered, and one line says so (capacity.rs).
    let (config, lowered) = capacity::fit(&config, &capacity::Limits::of_this_process());
    let host = config.host.clone();
    let server = match Server::bind(config) {
        Ok(server) => server,
        // A setting that cannot be right (a bad Redis URL), like a bad port: exit 2.
        Err(err) if err.kind() == io::ErrorKind::InvalidInput => {
            eprintln!("error: {err}\n{}", config::SEE_HELP);
            return ExitCode::from(2);
        }
        Err(err) => {
            eprintln!("error: {err}");
            if err.kind() == std::io::ErrorKind::AddrInUse {
                eprintln!("{}", config::PORT_IN_USE);
            }
            return ExitCode::FAILURE;
        }
    };
    if let Some(line) = lowered {
        eprintln!("{line}");
    }
    // The one line scripts wait for: it carries the real port (useful with PORT=0).
    println!("Server running at {}", server.url());
    // On `--host 0.0.0.0`: the addresses students can type (classroom/interfaces.rs).
    for line in interfaces::classroom_lines(&host, server.local_addr().port()) {
        println!("{line}");
    }
    let _ = std::io::stdout().flush();
    server.run();
    ExitCode::SUCCESS
}
