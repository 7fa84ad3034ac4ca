//! Issue 14, item 22: places where docs/FORMAT.md had to state a rule, checked against the
//! binary and the library (the test vectors in tests/it/vectors.rs cover the rest).
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.

use crate::common;

use std::process::Stdio;

use sealstream::error::{Error, HeaderError};
use sealstream::format::Header;

/// FORMAT.md §8.1 step 2: an empty input matches the magic vacuously and is a truncated
/// header (not "not sealstream"), for a file, for stdin, and for `inspect`.
#[test]
fn empty_input_is_a_truncated_header() {
    assert_eq!(Header::parse(&[]).err(), Some(HeaderError::Truncated));
    assert!(matches!(
        Header::read_from(&mut &[][..]),
        Err(Error::Header(HeaderError::Truncated))
    ));

    let s = common::Scratch::new();
    let k = s.keyfile("a.key", &common::key(1));
    let empty = s.path("empty.sealed");
    common::write(&empty, b"");
    let (k, empty_s) = (k.display().to_string(), empty.display().to_string());
    let out = s.path("out.bin");
    let o = s.run(&[
        "decrypt",
        "-k",
        &k,
        "-o",
        &out.display().to_string(),
        &empty_s,
    ]);
    assert_eq!(common::code(&o), 4, "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("ends inside the header"),
        "{}",
        common::stderr(&o)
    );
    assert!(!out.exists());

    let o = s.run(&["inspect", &empty_s]);
    assert_eq!(common::code(&o), 4, "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("ends inside the header"));

    let o = s
        .cmd()
        .args(["decrypt", "-k", &k])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(common::code(&o), 4, "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("ends inside the header"));
    assert!(o.stdout.is_empty());
}

/// FORMAT.md §7 step 2: the reference encoder writes local stanzas in the order the keys
/// are given (after any KMS stanzas).
#[test]
fn local_stanzas_are_written_in_the_order_given() {
    let s = common::Scratch::new();
    let (a, b) = (common::key(1), common::key(2));
    let ka = s.keyfile("a.key", &a).display().to_string();
    let kb = s.keyfile("b.key", &b).display().to_string();
    let input = s.path("in.bin");
    common::write(&input, &common::data(1000));
    let input = input.display().to_string();
    for (order, want) in [([&kb, &ka], [&b, &a]), ([&ka, &kb], [&a, &b])] {
        let out = s.path("out.sealed");
        let _ = std::fs::remove_file(&out);
        let o = s.run(&[
            "encrypt",
            "-k",
            order[0],
            "-k",
            order[1],
            "-o",
            &out.display().to_string(),
            &input,
        ]);
        assert_eq!(common::code(&o), 0, "{}", common::stderr(&o));
        let bytes = std::fs::read(&out).expect("read");
        let (h, _) = Header::parse(&bytes).expect("header");
        let ids: Vec<&str> = h.stanzas.iter().map(|s| s.key_id.as_str()).collect();
        assert_eq!(ids, [want[0].id(), want[1].id()]);
    }
}
