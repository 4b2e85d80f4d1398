//! `provision approve PLAN`: check the plan offline, then sign its digest with an SSH key
//! (a key file, or ssh-agent through `ssh-keygen -Y sign`) and write the approval file.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use time::format_description::well_known::Rfc3339;

use crate::approval::fingerprint;
use crate::approval::sign::{self, KeyFile, Signed};
use crate::cli::ApproveArgs;
use crate::config::Env;
use crate::error::{Error, Exit};
use crate::output::Output;
use crate::planfile::Plan;
use crate::regular_file;
use crate::sanitize::sanitize;
use crate::term;

use super::now;

pub fn run(args: &ApproveArgs, env: &Env<'_>, out: &Output) -> Result<Exit, Error> {
    let plan = checked_plan(&args.plan)?;
    let signed = match &args.key {
        Some(path) => match KeyFile::read(path)? {
            KeyFile::Private(key) => {
                let key = if key.is_encrypted() {
                    if !term::is_interactive() {
                        return Err(Error::PassphraseNeedsTerminal { path: path.clone() });
                    }
                    let prompt = format!("Passphrase for `{}`", path.display());
                    let passphrase = term::passphrase(&sanitize(&prompt))?;
                    sign::decrypt(&key, path, passphrase.as_bytes())?
                } else {
                    *key
                };
                sign::sign_with_key(&key, path, &plan.digest)?
            }
            KeyFile::Public(key) => {
                let sock = agent_socket(env)?;
                let held = sign::agent_keys(&sock)?;
                if !held.iter().any(|k| k.key_data() == key.key_data()) {
                    return Err(Error::AgentLacksKey {
                        path: path.clone(),
                        fingerprint: fingerprint(key.key_data()),
                    });
                }
                sign::sign_with_agent(&sock, &key, &plan.digest)?
            }
        },
        None => {
            let sock = agent_socket(env)?;
            let held = sign::agent_keys(&sock)?;
            match held.as_slice() {
                [] => return Err(Error::AgentEmpty),
                [key] => sign::sign_with_agent(&sock, key, &plan.digest)?,
                several => {
                    let keys: String = several
                        .iter()
                        .map(|k| {
                            format!(
                                "  {} {} {}\n",
                                fingerprint(k.key_data()),
                                k.algorithm(),
                                k.comment()
                            )
                        })
                        .collect();
                    return Err(Error::AgentSeveralKeys {
                        count: several.len(),
                        keys,
                    });
                }
            }
        }
    };
    write_approval(args, &plan, &signed, out)
}

/// The plan's own offline checks, the ones `show` and `apply` make before anything else:
/// `Plan::load` verifies format and digest (exit 1 for a file that is no plan, 3 for a
/// refused one), `checked` its integrity (exit 3); expiry is checked here.
fn checked_plan(path: &Path) -> Result<Plan, Error> {
    let plan = super::checked(Plan::load(path)?)?;
    if now() >= plan.expires_at {
        return Err(Error::Expired {
            expires_at: plan.expires_at.format(&Rfc3339).unwrap_or_default(),
        });
    }
    Ok(plan)
}

fn agent_socket(env: &Env<'_>) -> Result<String, Error> {
    env("SSH_AUTH_SOCK")
        .filter(|s| !s.is_empty())
        .ok_or(Error::NoAgent)
}

/// Write the approval (`--out`, default beside the plan; `-` for stdout) and say what
/// was approved with which key.
fn write_approval(
    args: &ApproveArgs,
    plan: &Plan,
    signed: &Signed,
    out: &Output,
) -> Result<Exit, Error> {
    let fp = fingerprint(signed.key.key_data());
    let to_stdout = args.out.as_deref() == Some(Path::new("-"));
    let path = match &args.out {
        Some(p) => p.clone(),
        None => sign::default_out(&args.plan, &signed.key),
    };
    if !to_stdout && regular_file::same_file(&path, &args.plan) {
        return Err(Error::WriteFile {
            path,
            reason: "it is the plan being approved".into(),
        });
    }
    let summary = if to_stdout {
        out.stdout(&signed.armored);
        format!(
            "approved {} with {} ({})\n",
            plan.digest,
            fp,
            signed.key.algorithm()
        )
    } else {
        write_regular_file(&path, signed.armored.as_bytes())?;
        format!(
            "approved {} with {} ({})\nwrote {}\n",
            plan.digest,
            fp,
            signed.key.algorithm(),
            path.display()
        )
    };
    let summary: String = summary
        .lines()
        .map(|line| format!("{}\n", sanitize(line)))
        .collect();
    if to_stdout {
        out.stderr(&summary);
    } else {
        out.stdout(&summary);
    }
    Ok(Exit::Success)
}

/// Write `bytes` to `path`, which must be absent or a regular file (never a FIFO, a
/// device or a directory).
fn write_regular_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let error = |reason: String| Error::WriteFile {
        path: path.to_path_buf(),
        reason,
    };
    regular_file::check(path).map_err(error)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| error(e.to_string()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| error(e.to_string()))
}
