//! `cargo run`: read the settings, bind, print where we listen, serve forever.

use std::io::Write;
use std::process::ExitCode;

use sse_server::capacity;
use sse_server::classroom::interfaces;
use sse_server::config::{self, Command, Config};
use sse_server::redis::resp;
use sse_server::Server;

fn main() -> ExitCode {
    let config = match Config::from_env_and_args() {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("error: {err}\n\n{}", config::USAGE);
            return ExitCode::from(2);
        }
    };
    // A Redis URL that cannot be right is a setting error, like a bad port.
    if let Some(Err(err)) = config.redis.as_deref().map(resp::Url::parse) {
        eprintln!("error: --redis / REDIS_URL: {err}\n\n{}", config::USAGE);
        return ExitCode::from(2);
    }
    // Caps above what the machine's limits allow are lowered, and one line says so (capacity.rs).
    let (config, lowered) = capacity::fit(&config, &capacity::Limits::of_this_process());
    let host = config.host.clone();
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: {err}");
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
