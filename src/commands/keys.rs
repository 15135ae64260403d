//! `courier keys generate`, `show`, `rotate` and `revoke`.

use crate::cli::{KeysCommand, RevokeArgs, RotateArgs};
use anyhow::Context;
use courier_protocol::{KeyStatement, SignedKeyStatement, SigningKey, VendorKey};
use courier_provider::{generate_key, load_key, public_key, save_key};
use courier_transport::RegistryClient;

pub async fn run(cmd: KeysCommand) -> anyhow::Result<()> {
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
        KeysCommand::Rotate(args) => rotate(args).await,
        KeysCommand::Revoke(args) => revoke(args).await,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Connects to the registry authenticated as `key`.
async fn authenticated(
    registry: &crate::connect::RegistryArgs,
    key: &SigningKey,
    agent: &str,
) -> anyhow::Result<RegistryClient> {
    let client = registry.connect(agent).await?;
    client
        .authenticate(key)
        .await
        .context("authenticating to the registry")?;
    Ok(client)
}

async fn rotate(args: RotateArgs) -> anyhow::Result<()> {
    let old = load_key(&args.key).with_context(|| format!("reading {}", args.key.display()))?;
    let (new, new_path) = match &args.new_key {
        Some(path) => (
            load_key(path).with_context(|| format!("reading {}", path.display()))?,
            path.clone(),
        ),
        None => {
            let key = generate_key();
            save_key(&args.out, &key, args.force)
                .with_context(|| format!("writing {}", args.out.display()))?;
            println!(
                "wrote new vendor key {} (keep it secret)",
                args.out.display()
            );
            (key, args.out.clone())
        }
    };
    let (old_pub, new_pub) = (VendorKey::of(&old), VendorKey::of(&new));
    anyhow::ensure!(old_pub != new_pub, "the new key is the current key");
    let statement =
        SignedKeyStatement::sign(&KeyStatement::rotate(old_pub, new_pub, now_ms()), &old);
    let registry = authenticated(&args.registry, &old, "courier-cli/keys-rotate").await?;
    let pushed = registry.publish_statement(statement).await;
    registry.close();
    pushed.with_context(|| {
        format!(
            "the registry refused the rotation (retry with --new-key {})",
            new_path.display()
        )
    })?;
    println!("rotated {old_pub}");
    println!("     to {new_pub}");
    println!(
        "publish with --key {} from now on; clients that trust the old key follow the rotation",
        new_path.display()
    );
    Ok(())
}

async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let key = load_key(&args.key).with_context(|| format!("reading {}", args.key.display()))?;
    let public = VendorKey::of(&key);
    anyhow::ensure!(
        args.yes,
        "revoking {public} cannot be undone: run again with --yes to confirm"
    );
    let statement = SignedKeyStatement::sign(&KeyStatement::revoke(public, now_ms()), &key);
    let registry = authenticated(&args.registry, &key, "courier-cli/keys-revoke").await?;
    let pushed = registry.publish_statement(statement).await;
    registry.close();
    pushed.context("the registry refused the revocation")?;
    println!(
        "revoked {public}: its proxies no longer match, and clients that learn of it refuse them"
    );
    Ok(())
}
