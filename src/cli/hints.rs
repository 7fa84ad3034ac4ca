//! The CLI's wording of library errors.
//!
//! The library's messages say what to change in terms a library user has (the KMS client's
//! configuration, a provider's unwrap budget); they never name this binary's flags. Here
//! each such piece of advice is mapped to the flag that changes it, so the CLI prints the
//! sentences it always printed. The advice is matched wherever it appears, including in
//! the per-stanza reasons of a failed unwrap (which the library keeps as text).

use sealstream::error::Error;

/// (the library's advice, the CLI's) — the left side is exactly what `kms` and `keys`
/// write; `hints::tests` checks that each still appears in a library message.
const ADVICE: &[(&str, &str)] = &[
    (
        "raise the retry attempts of the KMS client's configuration",
        "raise --kms-max-attempts",
    ),
    (
        "the operation timeout of the KMS client's configuration",
        "--kms-timeout",
    ),
    (
        "check the credentials (profile, AWS_* environment)",
        "check the credentials (--profile, AWS_*)",
    ),
    (
        "no AWS region configured: set one in the configuration (AWS_REGION) or use a key ARN",
        "no AWS region configured: pass --region, set AWS_REGION, or use a key ARN",
    ),
    ("resolving the KMS key ", "resolving --kms-key "),
    (
        "raise the per-object unwrap budget (with_max_decrypts)",
        "raise --kms-max-decrypts",
    ),
    (
        "KMS discovery needs at least one allowed account",
        "--kms-discovery needs at least one --kms-allow-account ACCOUNT",
    ),
    (
        "name a key (KmsKey) to encrypt",
        "name a key with --kms-key to encrypt",
    ),
    // `aws`: the credential chain and the profile check.
    (
        "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile NAME for a configured profile",
    ),
    (
        "check the AWS profile name",
        "check the name given to --profile",
    ),
    ("for the AWS profile '", "for --profile '"),
    // `keys::local`: the default key's location.
    ("or give the key file's path", "or pass -k KEYFILE"),
    // `keyring`: no key held.
    (
        "name a key file or a KMS key",
        "pass a key with -k KEYFILE or --kms-key KEY",
    ),
];

/// The message the CLI prints for `e`.
pub fn render(e: &Error) -> String {
    apply(&e.to_string())
}

/// Replaces the library's advice in `msg` with the CLI's flags. Idempotent: advice already
/// worded for the CLI (S3's credential hint, added by kind in `cli::s3`) is left alone.
pub fn apply(msg: &str) -> String {
    let mut out = msg.to_string();
    for (library, cli) in ADVICE {
        if out.contains(library) && !out.contains(cli) {
            out = out.replace(library, cli);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealstream::format::{Context, Stanza};
    use sealstream::keys::{DataKey, KeyProvider};

    #[test]
    fn every_advice_is_still_written_by_the_library() {
        // The library's sources hold each left side verbatim: a reworded message would
        // silently lose its flag hint otherwise.
        let sources = [
            include_str!("../kms.rs"),
            include_str!("../keys/mod.rs"),
            include_str!("../keys/local.rs"),
            include_str!("../keyring.rs"),
            include_str!("../aws.rs"),
        ];
        for (library, _) in ADVICE {
            let needle = library.trim_end();
            assert!(
                sources.iter().any(|s| s.contains(needle)),
                "no library message says {library:?}"
            );
        }
    }

    /// The credential and profile advice of `aws` gets `--profile`, once, whether or not
    /// `cli::s3` already added it by error kind.
    #[test]
    fn aws_advice_gets_the_profile_flag_once() {
        let lib = "KMS Decrypt for k: no AWS credentials found (…); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";
        let cli = apply(lib);
        assert!(
            cli.ends_with(", or pass --profile NAME for a configured profile"),
            "{cli}"
        );
        assert_eq!(apply(&cli), cli);
        assert_eq!(cli.matches("--profile").count(), 1, "{cli}");
        let profile =
            apply("AWS profile 'x' is not defined in a and b; check the AWS profile name");
        assert!(
            profile.ends_with("check the name given to --profile"),
            "{profile}"
        );
    }

    struct Refuses;
    impl KeyProvider for Refuses {
        fn provider_id(&self) -> &str {
            "aws-kms"
        }
        fn key_id(&self) -> &str {
            "k"
        }
        fn wrap(&self, _: &DataKey, _: &Context) -> sealstream::Result<Stanza> {
            unreachable!()
        }
        fn unwrap(&self, _: &Stanza, _: &Context) -> sealstream::Result<DataKey> {
            Err(Error::UnwrapFailed(vec![]))
        }
        fn matches(&self, _: &Stanza) -> bool {
            true
        }
        fn unwrap_budget(&self) -> Option<usize> {
            Some(1)
        }
    }

    #[test]
    fn nested_stanza_reasons_get_the_flag_too() {
        let stanzas: Vec<Stanza> = (0..3u8)
            .map(|i| Stanza {
                provider: "aws-kms".into(),
                key_id: "k".into(),
                wrapped: vec![i],
            })
            .collect();
        let e = sealstream::keys::unwrap_any(&stanzas, &[&Refuses], &Context::new(), &|_| false)
            .unwrap_err();
        assert!(!e.to_string().contains("--kms-max-decrypts"), "{e}");
        assert!(
            render(&e).contains("raise --kms-max-decrypts"),
            "{}",
            render(&e)
        );
    }
}
