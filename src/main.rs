use clap::Parser;
use mcrelay::cli::{Cli, Command};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                mcrelay::exit::USAGE
            } else {
                mcrelay::exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match cli.command {
        Command::Run(args) => mcrelay::run::cmd_run(args),
        Command::Check(args) => mcrelay::cli::cmd_check(args),
        Command::Reload(args) => mcrelay::cli::cmd_reload(args),
        Command::Status(args) => mcrelay::cli::cmd_status(args),
        Command::Stats(args) => mcrelay::cli::cmd_stats(args),
        Command::Completions(args) => mcrelay::cli::cmd_completions(args),
    };
    std::process::exit(code);
}
