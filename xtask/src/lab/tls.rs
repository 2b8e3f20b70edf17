//! The lab's TLS material: a small CA and the web servers' certificate for
//! the VIP's name and address, made with `openssl` once per lab run in the
//! lab's run directory (removed with it). `lb` never sees any of it: it
//! passes TLS through at L4; nginx terminates it on each web server.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::topology::VIP;
use super::LabError;
use crate::cmd;

/// The name the web servers' certificate is for, beside the VIP's address
/// (a client resolves it to the VIP with `curl --resolve`).
pub const TLS_NAME: &str = "www.lab.test";

/// Validity of every certificate, in days: a lab lives minutes.
const VALID_DAYS: &str = "2";

/// Common name of the lab's CA.
const CA_NAME: &str = "lb lab CA";

/// The directory of the lab's TLS files under its run directory.
fn tls_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("tls")
}

/// The lab CA's certificate: what clients verify the web servers with.
pub(super) fn ca_certificate(run_dir: &Path) -> PathBuf {
    tls_dir(run_dir).join("ca.crt")
}

/// The web servers' certificate (for [`TLS_NAME`] and the VIP).
pub(super) fn server_certificate(run_dir: &Path) -> PathBuf {
    tls_dir(run_dir).join("server.crt")
}

/// The web servers' private key.
pub(super) fn server_key(run_dir: &Path) -> PathBuf {
    tls_dir(run_dir).join("server.key")
}

/// Writes the lab's CA and the server certificate it signs into the run
/// directory.
pub(super) fn generate(run_dir: &Path) -> Result<(), LabError> {
    let dir = tls_dir(run_dir);
    let ca = write_ca(&dir, CA_NAME)?;
    let key = server_key(run_dir);
    let certificate = server_certificate(run_dir);
    cmd::run_quiet(
        new_certificate(&key, &certificate, TLS_NAME)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(dir.join("ca.key"))
            .args([
                "-addext",
                &format!("subjectAltName=DNS:{TLS_NAME},IP:{VIP}"),
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-addext",
                "keyUsage=critical,digitalSignature",
                "-addext",
                "extendedKeyUsage=serverAuth",
            ]),
    )?;
    Ok(())
}

/// Writes a self-signed CA named `common_name` as `ca.crt` and `ca.key` in
/// `dir` (created if missing); returns the certificate's path.
pub(super) fn write_ca(dir: &Path, common_name: &str) -> Result<PathBuf, LabError> {
    fs::create_dir_all(dir).map_err(|error| LabError::Io {
        context: format!("creating {}", dir.display()),
        error,
    })?;
    let certificate = dir.join("ca.crt");
    cmd::run_quiet(
        new_certificate(&dir.join("ca.key"), &certificate, common_name).args([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]),
    )?;
    Ok(certificate)
}

/// `openssl req -x509` making a new P-256 key (unencrypted) at `key` and a
/// certificate for `common_name` at `certificate`: self-signed, unless
/// `-CA`/`-CAkey` are added.
fn new_certificate(key: &Path, certificate: &Path, common_name: &str) -> Command {
    let mut command = Command::new("openssl");
    command
        .args(["req", "-x509", "-new", "-noenc"])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .args(["-days", VALID_DAYS, "-subj", &format!("/CN={common_name}")])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(certificate);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl x509 -text` of `certificate`.
    fn text(certificate: &Path) -> String {
        cmd::output(
            Command::new("openssl")
                .args(["x509", "-noout", "-text", "-in"])
                .arg(certificate),
        )
        .unwrap()
    }

    #[test]
    fn the_server_certificate_names_the_vip_and_chains_to_the_lab_ca() {
        let run_dir = std::env::temp_dir().join(format!("lb-tls-test-{}", std::process::id()));
        generate(&run_dir).unwrap();
        let server = text(&server_certificate(&run_dir));
        assert!(
            server.contains("DNS:www.lab.test, IP Address:10.0.0.100"),
            "{server}"
        );
        assert!(server.contains("CA:FALSE"), "{server}");
        assert!(text(&ca_certificate(&run_dir)).contains("CA:TRUE"));
        let verified = cmd::output(
            Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(ca_certificate(&run_dir))
                .arg(server_certificate(&run_dir)),
        );
        fs::remove_dir_all(&run_dir).unwrap();
        assert!(verified.unwrap().ends_with("OK\n"));
    }
}
