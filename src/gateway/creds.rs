//! The client credentials file: which access keys may sign requests to the gateway.
//!
//! The format is the AWS shared-credentials INI file that every S3 client already reads
//! (`~/.aws/credentials`), so one file can configure both sides:
//!
//! ```ini
//! # comments start with '#' or ';'
//! [backup-team]
//! aws_access_key_id = AKIAGATEWAYBACKUP01
//! aws_secret_access_key = 5ZEh3sQ…
//! ```
//!
//! Each section is one client; the section name is only a label (it appears in the
//! gateway's logs). Other keys in a section (`region`, `aws_session_token`…) are ignored;
//! session tokens are not supported (a client credential is a long-lived key pair).

use std::collections::BTreeMap;
use std::path::Path;

use crate::{Error, Result};

/// The access keys the gateway accepts, each with its secret and a label. Kept apart from
/// the gateway's own upstream credentials (the AWS chain): a client of the gateway never
/// holds a key that works against the bucket directly.
#[derive(Clone, Default)]
pub struct ClientCredentials {
    /// access key id → (label, secret)
    keys: BTreeMap<String, (String, String)>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("ClientCredentials")
            .field("access_keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ClientCredentials {
    /// Reads a credentials file (see the module documentation for the format).
    pub fn load(path: &Path) -> Result<ClientCredentials> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::io(
                format!("reading the client credentials file '{}'", path.display()),
                e,
            )
        })?;
        ClientCredentials::parse(&text).map_err(|reason| Error::KeyFile {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses the text of a credentials file; the error says which line is wrong.
    pub fn parse(text: &str) -> std::result::Result<ClientCredentials, String> {
        let mut out = ClientCredentials::default();
        let mut section: Option<(String, Option<String>, Option<String>, usize)> = None;
        let finish = |s: Option<(String, Option<String>, Option<String>, usize)>,
                      out: &mut ClientCredentials|
         -> std::result::Result<(), String> {
            let Some((label, id, secret, line)) = s else {
                return Ok(());
            };
            match (id, secret) {
                (Some(id), Some(secret)) => out.add(&label, &id, &secret),
                _ => Err(format!(
                    "section [{label}] (line {line}) needs both aws_access_key_id and aws_secret_access_key"
                )),
            }
        };
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let lineno = n + 1;
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let label = rest
                    .strip_suffix(']')
                    .ok_or_else(|| format!("line {lineno}: a section header must end with ']'"))?
                    .trim()
                    .to_string();
                finish(section.take(), &mut out)?;
                section = Some((label, None, None, lineno));
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {lineno}: expected 'name = value' or '[section]'"))?;
            let (k, v) = (k.trim(), v.trim());
            let Some(s) = section.as_mut() else {
                return Err(format!(
                    "line {lineno}: '{k}' is outside any [section]; put each client's keys under a [name] line"
                ));
            };
            match k {
                "aws_access_key_id" => s.1 = Some(v.to_string()),
                "aws_secret_access_key" => s.2 = Some(v.to_string()),
                _ => {}
            }
        }
        finish(section.take(), &mut out)?;
        if out.keys.is_empty() {
            return Err(
                "no credentials in the file: add a [name] section with aws_access_key_id and aws_secret_access_key"
                    .into(),
            );
        }
        Ok(out)
    }

    /// Adds one client key pair (for programs that build the set themselves).
    pub fn add(
        &mut self,
        label: &str,
        access_key_id: &str,
        secret: &str,
    ) -> std::result::Result<(), String> {
        if access_key_id.is_empty() || secret.is_empty() {
            return Err(format!("[{label}]: empty access key id or secret"));
        }
        if access_key_id.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "[{label}]: the access key id must be printable ASCII without spaces"
            ));
        }
        if self
            .keys
            .insert(
                access_key_id.to_string(),
                (label.to_string(), secret.to_string()),
            )
            .is_some()
        {
            return Err(format!(
                "[{label}]: access key id {access_key_id} appears twice"
            ));
        }
        Ok(())
    }

    /// Number of client keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no client key is configured (the gateway refuses to start so).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The s3s authenticator holding these keys.
    pub(crate) fn to_auth(&self) -> Auth {
        Auth {
            keys: self
                .keys
                .iter()
                .map(|(id, (_, secret))| (id.clone(), secret.clone().into()))
                .collect(),
        }
    }
}

/// Looks up a client's secret for s3s's signature checks; an unknown access key id gets
/// S3's own answer (403 InvalidAccessKeyId), as a client would get from S3.
pub(crate) struct Auth {
    keys: BTreeMap<String, s3s::auth::SecretKey>,
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        self.keys.get(access_key).cloned().ok_or_else(|| {
            super::errors::error(
                "InvalidAccessKeyId",
                http::StatusCode::FORBIDDEN,
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ini() {
        let c = ClientCredentials::parse(
            "# c\n[a]\naws_access_key_id = AK1\naws_secret_access_key=S1\nregion=x\n\n[b]\naws_access_key_id=AK2\naws_secret_access_key = S2\n",
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert!(format!("{c:?}").contains("AK1") && !format!("{c:?}").contains("S1"));
    }

    #[test]
    fn refuses_bad_files() {
        for bad in [
            "",
            "aws_access_key_id = x\n",
            "[a]\naws_access_key_id = AK\n",
            "[a\naws_access_key_id = AK\naws_secret_access_key = S\n",
            "[a]\nnonsense\n",
            "[a]\naws_access_key_id=AK\naws_secret_access_key=S\n[b]\naws_access_key_id=AK\naws_secret_access_key=T\n",
        ] {
            assert!(ClientCredentials::parse(bad).is_err(), "{bad:?}");
        }
    }
}
