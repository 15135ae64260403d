//! `courier completions <shell>`: the shell completion script, generated from the clap
//! grammar by clap_complete, printed on stdout.

use crate::cli::{Cli, CompletionsArgs};
use clap::CommandFactory;

pub fn run(args: CompletionsArgs) -> anyhow::Result<()> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "courier",
        &mut std::io::stdout(),
    );
    Ok(())
}
