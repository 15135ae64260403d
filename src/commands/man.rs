//! `courier man`: the manual pages, generated from the clap grammar by clap_mangen: courier(1)
//! on stdout, or with `--dir` one page per command and subcommand written to a directory.

use crate::cli::{Cli, ManArgs};
use anyhow::Context;
use clap::CommandFactory;

pub fn run(args: ManArgs) -> anyhow::Result<()> {
    match args.dir {
        None => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout().lock())
            .context("cannot print the manual page"),
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write the manual pages to {}", dir.display()))?;
            println!("manual pages written to {}", dir.display());
            Ok(())
        }
    }
}
