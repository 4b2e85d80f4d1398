//! Making an approval: an SSHSIG over `"<digest>\n"` in the namespace `provision-plan`,
//! with a private key file (RustCrypto's `ssh-key`) or through ssh-agent, where OpenSSH's
//! own `ssh-keygen -Y sign` does the signing (as git does: it speaks the agent protocol,
//! hardware-backed keys included). Asks nothing on a terminal: a passphrase comes in as
//! a parameter.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ssh_key::private::{KeypairData, RsaKeypair};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use super::{NAMESPACE, signed_message};
use crate::error::Error;
use crate::regular_file::read_bounded;

/// What `--key FILE` holds.
pub enum KeyFile {
    /// An OpenSSH private key (maybe encrypted): sign in-process.
    Private(Box<PrivateKey>),
    /// A public key: sign through the agent with its private half.
    Public(PublicKey),
}

/// A key file is a few kilobytes (an RSA-16384 private key stays under 16 KiB).
const MAX_KEY_BYTES: u64 = 64 * 1024;

fn key_error(path: &Path, reason: impl Into<String>, hint: &str) -> Error {
    Error::SigningKey {
        path: path.to_path_buf(),
        reason: reason.into(),
        hint: hint.to_string(),
    }
}

impl KeyFile {
    /// Read `--key FILE`: an OpenSSH private key, or a public key (`.pub`) for the agent.
    pub fn read(path: &Path) -> Result<KeyFile, Error> {
        let bytes = read_bounded(path, MAX_KEY_BYTES).map_err(|reason| {
            key_error(
                path,
                reason,
                "Pass an OpenSSH private key file, or the `.pub` of a key in ssh-agent.",
            )
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
            return PrivateKey::from_openssh(text)
                .map(|k| KeyFile::Private(Box::new(k)))
                .map_err(|e| {
                    key_error(
                        path,
                        format!("the private key cannot be read: {e}"),
                        "Check the file, or use the key through ssh-agent (`--key FILE.pub`).",
                    )
                });
        }
        if text.starts_with("-----BEGIN") {
            return Err(key_error(
                path,
                "the private key is in PEM/PKCS#8 form, not OpenSSH's",
                "Convert it with `ssh-keygen -p -f FILE` (which rewrites it in OpenSSH's format), or use it through ssh-agent (`--key FILE.pub`).",
            ));
        }
        PublicKey::from_openssh(text).map(KeyFile::Public).map_err(|_| {
            key_error(
                path,
                "it is neither an OpenSSH private key nor a public key",
                "Pass your private key file (e.g. ~/.ssh/id_ed25519), or the `.pub` of a key in ssh-agent.",
            )
        })
    }
}

/// A signed approval: the armored signature and the key that made it.
pub struct Signed {
    pub armored: String,
    pub key: PublicKey,
}

/// Sign with a decrypted private key (sha512, as `ssh-keygen -Y sign` does).
pub fn sign_with_key(key: &PrivateKey, path: &Path, digest: &str) -> Result<Signed, Error> {
    let message = signed_message(digest);
    let signed = match key.key_data() {
        KeypairData::Rsa(keypair) => sign_rsa(keypair, message.as_bytes()),
        _ => key
            .sign(NAMESPACE, HashAlg::Sha512, message.as_bytes())
            .map_err(|e| e.to_string()),
    };
    let sig = signed.map_err(|e| {
            key_error(
                path,
                format!("cannot sign with this key: {e}"),
                "Hardware-backed (sk-) keys sign through ssh-agent: pass `--key FILE.pub` with the agent running.",
            )
        })?;
    let armored = sig
        .to_pem(LineEnding::LF)
        .map_err(|e| Error::Internal(format!("cannot armor a signature: {e}")))?;
    Ok(Signed {
        armored,
        key: key.public_key().clone(),
    })
}

/// RSA, signed as ssh-key's own `try_sign` does (PKCS#1 v1.5 over SHA-512,
/// `rsa-sha2-512`) but from the right primes: ssh-key 0.6.7 builds the private key from
/// `p` twice and so cannot sign with any RSA key (RustCrypto/SSH#387; fixed by #217 on
/// the 0.7 line). Drop this for `key.sign` once ssh-key 0.7 is released. Blinded with
/// the OS's randomness.
fn sign_rsa(keypair: &RsaKeypair, message: &[u8]) -> Result<SshSig, String> {
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    let big = |m: &ssh_key::Mpint| rsa::BigUint::try_from(m).map_err(|e| e.to_string());
    let private = rsa::RsaPrivateKey::from_components(
        big(&keypair.public.n)?,
        big(&keypair.public.e)?,
        big(&keypair.private.d)?,
        vec![big(&keypair.private.p)?, big(&keypair.private.q)?],
    )
    .map_err(|e| e.to_string())?;
    let signed_data =
        SshSig::signed_data(NAMESPACE, HashAlg::Sha512, message).map_err(|e| e.to_string())?;
    let signer = rsa::pkcs1v15::SigningKey::<ssh_key::sha2::Sha512>::new(private);
    let raw = signer
        .try_sign_with_rng(&mut ssh_key::rand_core::OsRng, &signed_data)
        .map_err(|e| e.to_string())?;
    let signature = ssh_key::Signature::new(
        ssh_key::Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        raw.to_vec(),
    )
    .map_err(|e| e.to_string())?;
    SshSig::new(
        KeyData::Rsa(keypair.public.clone()),
        NAMESPACE,
        HashAlg::Sha512,
        signature,
    )
    .map_err(|e| e.to_string())
}

/// Decrypt an encrypted private key with `passphrase`.
pub fn decrypt(key: &PrivateKey, path: &Path, passphrase: &[u8]) -> Result<PrivateKey, Error> {
    key.decrypt(passphrase).map_err(|_| {
        key_error(
            path,
            "the passphrase does not decrypt it",
            "Run `provision approve` again and type the key's passphrase.",
        )
    })
}

/// The keys an agent holds (`ssh-add -L`), `agent_sock` being its `SSH_AUTH_SOCK`.
pub fn agent_keys(agent_sock: &str) -> Result<Vec<PublicKey>, Error> {
    let output = Command::new("ssh-add")
        .arg("-L")
        .env("SSH_AUTH_SOCK", agent_sock)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Agent {
            reason: format!("cannot run `ssh-add`: {e}"),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match output.status.code() {
        Some(0) => {}
        // `ssh-add -L` exits 1 for "The agent has no identities." (and other failures),
        // 2 when it cannot reach the agent.
        Some(1)
            if stdout.contains("no identities")
                || String::from_utf8_lossy(&output.stderr).contains("no identities") =>
        {
            return Ok(Vec::new());
        }
        _ => {
            return Err(Error::Agent {
                reason: format!(
                    "cannot reach the agent at `SSH_AUTH_SOCK`={agent_sock}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
    }
    // Bounded by what the agent said; a line we cannot read is not one we could use.
    Ok(stdout
        .lines()
        .filter_map(|line| PublicKey::from_openssh(line.trim()).ok())
        .collect())
}

/// Sign through the agent with the key whose public half is `key`, by running
/// `ssh-keygen -Y sign -n provision-plan -f KEY.pub` on the message.
pub fn sign_with_agent(agent_sock: &str, key: &PublicKey, digest: &str) -> Result<Signed, Error> {
    let dir = tempfile::tempdir()
        .map_err(|e| Error::Internal(format!("cannot make a temporary directory: {e}")))?;
    let pub_path: PathBuf = dir.path().join("approver.pub");
    let pub_text = key
        .to_openssh()
        .map_err(|e| Error::Internal(format!("cannot write a public key: {e}")))?;
    std::fs::write(&pub_path, format!("{pub_text}\n"))
        .map_err(|e| Error::Internal(format!("cannot write a public key: {e}")))?;
    let mut child = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", NAMESPACE, "-f"])
        .arg(&pub_path)
        .env("SSH_AUTH_SOCK", agent_sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Agent {
            reason: format!("cannot run `ssh-keygen` (OpenSSH's client tools): {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows as ssh-keygen's own failure below.
        let _ = stdin.write_all(signed_message(digest).as_bytes());
    }
    let output = child.wait_with_output().map_err(|e| Error::Agent {
        reason: format!("`ssh-keygen -Y sign` failed: {e}"),
    })?;
    if !output.status.success() {
        return Err(Error::Agent {
            reason: format!(
                "`ssh-keygen -Y sign` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    let armored = String::from_utf8_lossy(&output.stdout).into_owned();
    // Trust, but check: the signature must be by that key, over this digest.
    let sig = SshSig::from_pem(armored.trim()).map_err(|e| Error::Agent {
        reason: format!("`ssh-keygen -Y sign` wrote no signature: {e}"),
    })?;
    key.verify(NAMESPACE, signed_message(digest).as_bytes(), &sig)
        .map_err(|e| Error::Agent {
            reason: format!("the agent's signature does not verify: {e}"),
        })?;
    Ok(Signed {
        armored,
        key: key.clone(),
    })
}

/// `PLAN.<the first 8 characters of the SHA256 fingerprint's base64, `+` and `/` as `-`
/// and `_`>.sig`: one file per approver beside the plan.
pub fn default_out(plan: &Path, key: &PublicKey) -> PathBuf {
    let fp = key.fingerprint(HashAlg::Sha256).to_string();
    let b64 = fp.strip_prefix("SHA256:").unwrap_or(&fp);
    let short: String = b64
        .chars()
        .take(8)
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let mut name = plan.as_os_str().to_os_string();
    name.push(format!(".{short}.sig"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::private::Ed25519Keypair;

    #[test]
    fn the_default_name_is_the_plan_and_the_url_safe_fingerprint() {
        // Seeds searched for a fingerprint with `+` or `/` in its first 8 characters.
        for seed in 0u8..=255 {
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]));
            let fp = key.public_key().fingerprint(HashAlg::Sha256).to_string();
            let first8 = &fp["SHA256:".len().."SHA256:".len() + 8];
            let out = default_out(Path::new("plans/plan.json"), key.public_key());
            let expected = format!(
                "plans/plan.json.{}.sig",
                first8.replace('+', "-").replace('/', "_")
            );
            assert_eq!(out, PathBuf::from(expected));
            let name = out.to_string_lossy().into_owned();
            assert!(!name["plans/".len()..].contains(['+', '/']), "{name}");
        }
    }

    #[test]
    fn signs_the_digest_and_a_newline_in_the_namespace() {
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
        let signed = sign_with_key(&key, Path::new("k"), "sha256:ab").unwrap();
        let sig = SshSig::from_pem(&signed.armored).unwrap();
        assert_eq!(sig.namespace(), "provision-plan");
        assert_eq!(sig.hash_alg(), HashAlg::Sha512);
        key.public_key()
            .verify("provision-plan", b"sha256:ab\n", &sig)
            .unwrap();
        assert!(
            key.public_key()
                .verify("provision-plan", b"sha256:ab", &sig)
                .is_err()
        );
    }
}
