//! `courier keys generate` and `courier keys show`.

use crate::cli::KeysCommand;
use anyhow::Context;
use courier_provider::{generate_key, load_key, public_key, save_key};

pub fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate { out, force } => {
            let key = generate_key();
            save_key(&out, &key, force).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote vendor key {} (keep it secret)", out.display());
            println!("public key: {}", public_key(&key));
            println!(
                "clients trust it with: courier call --trust {}",
                public_key(&key)
            );
            Ok(())
        }
        KeysCommand::Show { key } => {
            let k = load_key(&key).with_context(|| format!("reading {}", key.display()))?;
            println!("{}", public_key(&k));
            Ok(())
        }
    }
}
