//! `encrypt`'s object attribute options, named and written as `aws s3 cp` / `aws s3api
//! put-object` take them, turned into the library's [`ObjectAttributes`]. `--sse` and
//! `--checksum-algorithm` offer what `aws s3 cp` offers (the SDK's enums list more values
//! than an upload can use).

use std::collections::HashMap;
use std::path::Path;

use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectCannedAcl, ServerSideEncryption, StorageClass};
use clap::Args;
use clap::builder::PossibleValuesParser;
use sealstream::error::{Error, Result};
use sealstream::s3::ObjectAttributes;

use super::help;

/// Attributes of the objects an upload stores (S3 outputs only).
#[derive(Debug, Args, Default)]
pub struct ObjectArgs {
    /// Content-Type of the object. Default: guessed from the input file's name, as `aws s3
    /// cp` does (application/octet-stream for stdin or an unknown extension).
    #[arg(long, value_name = "TYPE", help_heading = help::OBJECT)]
    pub content_type: Option<String>,
    /// Do not guess the Content-Type from the file name.
    #[arg(long, conflicts_with = "content_type", help_heading = help::OBJECT)]
    pub no_guess_mime_type: bool,
    /// User metadata stored with the object: KEY=VALUE[,KEY=VALUE…] or a JSON object
    /// (repeatable). Counted with sealstream's header in S3's 2 KB limit: a header that no
    /// longer fits goes to a companion object.
    #[arg(long, value_name = "KEY=VALUE,…", help_heading = help::OBJECT)]
    pub metadata: Vec<String>,
    /// Tags: key1=value1&key2=value2 (URL-encoded, at most 10).
    #[arg(long, value_name = "TAGS", help_heading = help::OBJECT)]
    pub tagging: Option<String>,
    /// Storage class of the object (e.g. STANDARD_IA, GLACIER_IR, DEEP_ARCHIVE).
    #[arg(long, value_name = "CLASS", value_parser = PossibleValuesParser::new(StorageClass::values()), hide_possible_values = true, help_heading = help::OBJECT)]
    pub storage_class: Option<String>,
    /// Server-side encryption by S3 on top of sealstream's, for buckets whose policy
    /// requires it.
    #[arg(long, value_name = "MODE", value_parser = ["AES256", "aws:kms", "aws:kms:dsse"], help_heading = help::OBJECT)]
    pub sse: Option<String>,
    /// The KMS key for --sse aws:kms (default: the account's aws/s3 key).
    #[arg(long, value_name = "KEY", requires = "sse", help_heading = help::OBJECT)]
    pub sse_kms_key_id: Option<String>,
    /// Use an S3 Bucket Key with --sse aws:kms.
    #[arg(long, requires = "sse", help_heading = help::OBJECT)]
    pub bucket_key_enabled: bool,
    /// Checksum S3 computes and verifies for every part (default CRC32).
    #[arg(long, value_name = "ALGORITHM", value_parser = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"], help_heading = help::OBJECT)]
    pub checksum_algorithm: Option<String>,
    /// Canned ACL (only where the bucket allows ACLs).
    #[arg(long, value_name = "ACL", value_parser = PossibleValuesParser::new(ObjectCannedAcl::values()), help_heading = help::OBJECT)]
    pub acl: Option<String>,
}

impl ObjectArgs {
    /// True if any option was given (they apply to S3 outputs only).
    pub fn any(&self) -> bool {
        self.content_type.is_some()
            || self.no_guess_mime_type
            || !self.metadata.is_empty()
            || self.tagging.is_some()
            || self.storage_class.is_some()
            || self.sse.is_some()
            || self.bucket_key_enabled
            || self.checksum_algorithm.is_some()
            || self.acl.is_some()
    }

    /// Refuses the options for an output that is not an S3 object.
    pub fn require_s3(&self) -> Result<()> {
        if self.any() {
            return Err(Error::InvalidArgument(
                "object attributes (--content-type, --metadata, --tagging, --storage-class, \
                 --sse, --checksum-algorithm, --acl…) apply only to s3:// outputs"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The attributes for the object made from `input` (its name guesses the
    /// Content-Type); checked.
    pub fn attributes(&self, input: Option<&Path>) -> Result<ObjectAttributes> {
        let mut a = ObjectAttributes::default();
        a.content_type = match (&self.content_type, input) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) if !self.no_guess_mime_type => {
                mime_guess::from_path(p).first().map(|m| m.to_string())
            }
            _ => None,
        };
        for m in &self.metadata {
            for (k, v) in parse_metadata(m)? {
                if a.metadata.insert(k.clone(), v).is_some() {
                    return Err(Error::InvalidArgument(format!(
                        "--metadata names {k:?} twice"
                    )));
                }
            }
        }
        a.tagging = self.tagging.clone();
        a.storage_class = self.storage_class.as_deref().map(StorageClass::from);
        a.sse = self.sse.as_deref().map(ServerSideEncryption::from);
        a.sse_kms_key_id = self.sse_kms_key_id.clone();
        a.bucket_key_enabled = self.bucket_key_enabled.then_some(true);
        a.checksum_algorithm = self
            .checksum_algorithm
            .as_deref()
            .map(ChecksumAlgorithm::from);
        a.acl = self.acl.as_deref().map(ObjectCannedAcl::from);
        a.check()?;
        Ok(a)
    }
}

/// `--metadata`: `k=v,k2=v2` (the AWS CLI's shorthand) or a JSON object of strings.
fn parse_metadata(s: &str) -> Result<HashMap<String, String>> {
    let bad = |why: String| {
        Error::InvalidArgument(format!(
            "--metadata {s:?}: {why}; write KEY=VALUE[,KEY=VALUE…] or a JSON object of strings"
        ))
    };
    if s.trim_start().starts_with('{') {
        let v: HashMap<String, String> = serde_json::from_str(s)
            .map_err(|e| bad(format!("not a JSON object of strings ({e})")))?;
        return Ok(v);
    }
    let mut out = HashMap::new();
    for pair in s.split(',') {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad(format!("{pair:?} has no '='")))?;
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(bad(format!("{k:?} is given twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_forms() {
        let m = parse_metadata("a=1,b=x=y").unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x=y");
        let j = parse_metadata(r#"{"owner": "ops", "n": "2"}"#).unwrap();
        assert_eq!(j["owner"], "ops");
        assert!(parse_metadata("novalue").is_err());
        assert!(parse_metadata("a=1,a=2").is_err());
        assert!(parse_metadata(r#"{"n": 2}"#).is_err());
    }

    #[test]
    fn content_type_is_guessed_unless_told() {
        let a = ObjectArgs::default();
        let p = Path::new("backup/report.json");
        assert_eq!(
            a.attributes(Some(p)).unwrap().content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(a.attributes(None).unwrap().content_type, None);
        let no = ObjectArgs {
            no_guess_mime_type: true,
            ..ObjectArgs::default()
        };
        assert_eq!(no.attributes(Some(p)).unwrap().content_type, None);
        let told = ObjectArgs {
            content_type: Some("text/csv".into()),
            ..ObjectArgs::default()
        };
        assert_eq!(
            told.attributes(Some(p)).unwrap().content_type.as_deref(),
            Some("text/csv")
        );
    }
}
