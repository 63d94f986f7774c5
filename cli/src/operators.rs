//! `jifen operators add`: a new operator of the admin API and the console (DESIGN §11) — a
//! random token printed once, and its SHA-256 appended to the operators file the mall reads
//! (`--operators-file`, `JIFEN_OPERATORS_FILE`). The file never holds a token.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use jifen_mall::operators::{Operators, Role, token_hash, valid_name};

#[derive(Debug, clap::Args)]
pub struct OperatorsArgs {
    #[command(subcommand)]
    command: OperatorsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum OperatorsCommand {
    /// Add an operator: prints their token once, appends its hash to the file.
    Add {
        /// The operators file (created when missing).
        #[arg(long, env = "JIFEN_OPERATORS_FILE")]
        file: PathBuf,
        /// Their name, as the history and the audit will show it.
        #[arg(long)]
        name: String,
        /// `viewer` (reads) or `operator` (also acts).
        #[arg(long, value_parser = ["viewer", "operator"])]
        role: String,
    },
}

pub fn run(args: &OperatorsArgs) -> anyhow::Result<()> {
    match &args.command {
        OperatorsCommand::Add { file, name, role } => add(file, name, role),
    }
}

fn add(file: &PathBuf, name: &str, role: &str) -> anyhow::Result<()> {
    let role = Role::parse(role).context("--role is viewer or operator")?;
    anyhow::ensure!(
        valid_name(name),
        "--name must be 1-64 letters, digits or . _ - @ (it names them in the history and the audit)"
    );
    if file.exists() {
        // The file as it is must load, so a broken file is not made worse.
        Operators::load(Some(file), None)?;
    }
    // Two 128-bit halves: 256 random bits.
    let token = format!(
        "{}{}",
        jifen_mall::console::session::random_token()?,
        jifen_mall::console::session::random_token()?
    );
    let entry = format!(
        "\n[[operators]]\nname = {name:?}\nrole = \"{}\"\ntoken_sha256 = \"{}\"\n",
        role.as_str(),
        token_hash(&token)
    );
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options
        .open(file)
        .with_context(|| format!("cannot open {}", file.display()))?;
    out.write_all(entry.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "Operator {name} ({}) added to {}.",
        role.as_str(),
        file.display()
    );
    println!(
        "Their token, shown this once (give it to them privately; the file keeps only its hash):"
    );
    println!();
    println!("  {token}");
    println!();
    println!(
        "The mall reads the file at start: restart it (or roll the Deployment) to let them in."
    );
    Ok(())
}
