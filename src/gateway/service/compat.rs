//! Tolerance for an S3-compatible upstream's answers that aws-sdk-s3 rejects.
//!
//! moto (the emulator the tests run against, 5.2.5) answers ListParts with the root element
//! `ListPartsResponse` where S3 sends `ListPartsResult`; boto3 does not care, aws-sdk-s3
//! refuses the document ("invalid XML root"). Only the root element's name is rewritten,
//! in a bounded buffer, and only for the ListParts calls this interceptor is attached to.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;

/// A ListParts answer of 1,000 parts is about 300 KB; anything far larger is not one.
const MAX_LIST_PARTS_BODY: usize = 8 << 20;

/// Renames the root element `ListPartsResponse` to `ListPartsResult` (see the module doc).
#[derive(Debug)]
pub(super) struct ListPartsRoot;

impl Intercept for ListPartsRoot {
    fn name(&self) -> &'static str {
        "sealstream::ListPartsRoot"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.response_mut().body_mut();
        let inner = std::mem::replace(body, SdkBody::taken());
        *body = SdkBody::from_body_1_x(Renamed {
            inner,
            buf: Vec::new(),
            done: false,
        });
        Ok(())
    }
}

struct Renamed {
    inner: SdkBody,
    buf: Vec<u8>,
    done: bool,
}

impl http_body::Body for Renamed {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if self.buf.len() + data.len() > MAX_LIST_PARTS_BODY {
                            return Poll::Ready(Some(Err(
                                "the upstream ListParts answer is implausibly large".into(),
                            )));
                        }
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    self.done = true;
                    let out = rename_root(std::mem::take(&mut self.buf));
                    return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(out)))));
                }
            }
        }
    }
}

/// The document with its root `ListPartsResponse` renamed; anything else unchanged.
fn rename_root(doc: Vec<u8>) -> Vec<u8> {
    const OPEN: &[u8] = b"<ListPartsResponse";
    const CLOSE: &[u8] = b"</ListPartsResponse>";
    // The root is the first element: skip the XML declaration and whitespace.
    let mut at = 0;
    if doc.starts_with(b"<?xml") {
        match doc.windows(2).position(|w| w == b"?>") {
            Some(p) => at = p + 2,
            None => return doc,
        }
    }
    while doc.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    let Some(close) = doc.windows(CLOSE.len()).rposition(|w| w == CLOSE) else {
        return doc;
    };
    if !doc[at..].starts_with(OPEN) || close < at {
        return doc;
    }
    let mut out = Vec::with_capacity(doc.len());
    out.extend_from_slice(&doc[..at]);
    out.extend_from_slice(b"<ListPartsResult");
    out.extend_from_slice(&doc[at + OPEN.len()..close]);
    out.extend_from_slice(b"</ListPartsResult>");
    out.extend_from_slice(&doc[close + CLOSE.len()..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_root_is_renamed() {
        let moto = b"<?xml version=\"1.0\"?>\n<ListPartsResponse xmlns=\"x\"><Key>a</Key></ListPartsResponse>";
        assert_eq!(
            rename_root(moto.to_vec()),
            b"<?xml version=\"1.0\"?>\n<ListPartsResult xmlns=\"x\"><Key>a</Key></ListPartsResult>"
        );
        let s3 = b"<?xml version=\"1.0\"?><ListPartsResult><Key>a</Key></ListPartsResult>";
        assert_eq!(rename_root(s3.to_vec()), s3);
        let err = b"<Error><Code>NoSuchUpload</Code></Error>";
        assert_eq!(rename_root(err.to_vec()), err);
    }
}
