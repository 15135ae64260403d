//! `courier root init`, `delegate`, `revoke`, `rotate` and `publish`: a vendor root kept in
//! a text file (its first keys, then every statement signed so far, one per line), each new
//! version signed by the root key files given and checked here before it is pushed.

use crate::cli::{
    RootCommand, RootDelegateArgs, RootFileArgs, RootInitArgs, RootRevokeArgs, RootRotateArgs,
};
use anyhow::Context;
use courier_protocol::{
    Delegation, NamePattern, RootKeys, RootStatement, SignedRootStatement, SigningKey, VendorKey,
};
use courier_provider::load_key;
use std::path::{Path, PathBuf};

const KEYS_PREFIX: &str = "keys:";
const STATEMENT_PREFIX: &str = "statement:";

pub async fn run(cmd: RootCommand) -> anyhow::Result<()> {
    match cmd {
        RootCommand::Init(args) => init(args),
        RootCommand::Delegate(args) => delegate(args).await,
        RootCommand::Revoke(args) => revoke(args).await,
        RootCommand::Rotate(args) => rotate(args).await,
        RootCommand::Publish(args) => {
            let root = RootFile::load(&args.file)?;
            for s in &root.chain {
                push(&args, s.clone()).await?;
            }
            println!(
                "pushed {} statements of {}",
                root.chain.len(),
                root.current.root
            );
            Ok(())
        }
    }
}

/// A root file: the first keys, the statements in order, and the newest verified.
struct RootFile {
    first: RootKeys,
    chain: Vec<SignedRootStatement>,
    current: RootStatement,
}

impl RootFile {
    fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading root file {}", path.display()))?;
        let mut first = None;
        let mut chain = Vec::new();
        for (i, line) in text.lines().map(str::trim).enumerate() {
            let at = || format!("{} line {}", path.display(), i + 1);
            if let Some(keys) = line.strip_prefix(KEYS_PREFIX) {
                first = Some(RootKeys::from_text(keys.trim()).with_context(at)?);
            } else if let Some(hex) = line.strip_prefix(STATEMENT_PREFIX) {
                chain.push(SignedRootStatement::from_hex(hex).with_context(at)?);
            }
        }
        let first = first.with_context(|| format!("{}: no keys: line", path.display()))?;
        let mut current = RootStatement::genesis(first.clone());
        for s in &chain {
            current = s
                .verify_after(&current)
                .with_context(|| format!("{}: a statement does not verify", path.display()))?
                .into_inner();
        }
        Ok(Self {
            first,
            chain,
            current,
        })
    }

    /// Signs `next` with `signers`, checks it follows the newest statement, appends it.
    fn append(
        &mut self,
        path: &Path,
        next: &RootStatement,
        signers: &[SigningKey],
    ) -> anyhow::Result<SignedRootStatement> {
        let signed = SignedRootStatement::sign(next, &signers.iter().collect::<Vec<_>>());
        signed
            .verify_after(&self.current)
            .context("the new root statement is refused (sign with more root keys?)")?;
        let mut text = format!(
            "# courier vendor root {}\n{KEYS_PREFIX} {}\n",
            self.first.id(),
            self.first.to_text()
        );
        self.chain.push(signed.clone());
        for s in &self.chain {
            text.push_str(&format!("{STATEMENT_PREFIX}{}\n", s.to_hex()));
        }
        write_file(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        self.current = next.clone();
        Ok(signed)
    }
}

/// Writes `bytes` to `path` by a temporary file renamed over it, so a crash leaves the old
/// root file or the new one, never half of one.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn load_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<SigningKey>> {
    paths
        .iter()
        .map(|p| load_key(p).with_context(|| format!("reading {}", p.display())))
        .collect()
}

/// A public key given as `ed25519:...` or as a key file.
fn public(text: &str) -> anyhow::Result<VendorKey> {
    if let Ok(key) = text.parse::<VendorKey>() {
        return Ok(key);
    }
    let key =
        load_key(Path::new(text)).with_context(|| format!("{text}: not a key or key file"))?;
    Ok(VendorKey::of(&key))
}

async fn push(args: &RootFileArgs, signed: SignedRootStatement) -> anyhow::Result<()> {
    let registry = args.registry.connect("courier-cli/root").await?;
    let pushed = registry.publish_root(signed).await;
    registry.close();
    pushed.context("the registry refused the root statement (courier root publish retries)")
}

fn init(args: RootInitArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.force || !args.file.exists(),
        "{} exists (pass --force to overwrite)",
        args.file.display()
    );
    let keys = load_keys(&args.keys)?;
    let root = RootKeys::new(keys.iter().map(VendorKey::of), args.threshold)?;
    let text = format!(
        "# courier vendor root {}\n{KEYS_PREFIX} {}\n",
        root.id(),
        root.to_text()
    );
    write_file(&args.file, text.as_bytes())
        .with_context(|| format!("writing {}", args.file.display()))?;
    println!(
        "wrote {} ({} of {} keys must sign)",
        args.file.display(),
        root.threshold,
        root.keys.len()
    );
    println!("root: {}", root.id());
    println!(
        "clients trust it with: courier call --trust-root {}",
        root.to_text()
    );
    Ok(())
}

async fn delegate(args: RootDelegateArgs) -> anyhow::Result<()> {
    let mut root = RootFile::load(&args.root.file)?;
    let key = public(&args.to)?;
    let names = args
        .names
        .iter()
        .map(|n| NamePattern::new(n).with_context(|| format!("--name {n}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let not_after_ms = now_ms().saturating_add(args.valid.as_millis() as u64);
    let mut next = root.current.next(now_ms());
    next.delegations.retain(|d| d.key != key);
    next.revoked.retain(|k| *k != key);
    next.delegations.push(Delegation {
        key,
        names,
        not_after_ms,
    });
    let signed = root.append(&args.root.file, &next, &load_keys(&args.sign)?)?;
    push(&args.root, signed).await?;
    println!(
        "version {}: {} may sign for {}",
        next.version,
        key,
        args.names.join(", ")
    );
    Ok(())
}

async fn revoke(args: RootRevokeArgs) -> anyhow::Result<()> {
    let mut root = RootFile::load(&args.root.file)?;
    let key = public(&args.key)?;
    let mut next = root.current.next(now_ms());
    next.delegations.retain(|d| d.key != key);
    if !next.revoked.contains(&key) {
        next.revoked.push(key);
    }
    let signed = root.append(&args.root.file, &next, &load_keys(&args.sign)?)?;
    push(&args.root, signed).await?;
    println!("version {}: {key} revoked", next.version);
    Ok(())
}

async fn rotate(args: RootRotateArgs) -> anyhow::Result<()> {
    let mut root = RootFile::load(&args.root.file)?;
    let new_keys = load_keys(&args.new_keys)?;
    let mut next = root.current.next(now_ms());
    next.keys = RootKeys::new(new_keys.iter().map(VendorKey::of), args.threshold)?;
    let mut signers = load_keys(&args.sign)?;
    signers.extend(new_keys);
    let signed = root.append(&args.root.file, &next, &signers)?;
    push(&args.root, signed).await?;
    println!(
        "version {}: the root's keys are now {} of {}",
        next.version,
        next.keys.threshold,
        next.keys.keys.len()
    );
    Ok(())
}
