//! The response body wrapper: frames pass through, a decoder watches them.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::body::SdkBody;
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::StreamEnd;
use super::events::{EventReader, Seen};
use crate::admission::Slot;

/// Wraps the body of a streamed response so that the event that ends the call is reported to
/// `end`.
pub(crate) fn settle_stream<T: Slot + 'static>(
    response: HttpResponse,
    end: StreamEnd<T>,
) -> HttpResponse {
    let mut response = response;
    let inner = response.take_body();
    *response.body_mut() = SdkBody::from_body_1_x(UsageBody {
        inner,
        watcher: Some(Watcher {
            decoder: MessageFrameDecoder::new(),
            buffer: BytesMut::new(),
            reader: EventReader::default(),
            end: Some(end),
        }),
    });
    response
}

pin_project! {
    struct UsageBody<T: Slot> {
        #[pin]
        inner: SdkBody,
        watcher: Option<Watcher<T>>,
    }
}

struct Watcher<T: Slot> {
    decoder: MessageFrameDecoder,
    buffer: BytesMut,
    reader: EventReader,
    end: Option<StreamEnd<T>>,
}

impl<T: Slot> Watcher<T> {
    /// Feeds the bytes of a data frame; `true` once the call's end was reported (or the stream
    /// cannot be read), after which nothing more is watched.
    fn feed(&mut self, data: &[u8]) -> bool {
        self.buffer.extend_from_slice(data);
        loop {
            match self.decoder.decode_frame(&mut self.buffer) {
                Ok(DecodedFrame::Complete(message)) => match self.reader.read(&message) {
                    Seen::Nothing => {}
                    Seen::Usage(counts) => {
                        if let Some(end) = self.end.take() {
                            end.succeeded(counts);
                        }
                        return true;
                    }
                    Seen::Failed(outcome) => {
                        if let Some(end) = self.end.take() {
                            end.failed(outcome);
                        }
                        return true;
                    }
                },
                Ok(DecodedFrame::Incomplete) => return false,
                // A stream we cannot read: leave the reservation at its estimate.
                Err(_) => return true,
            }
        }
    }
}

impl<T: Slot> Body for UsageBody<T> {
    type Data = Bytes;
    type Error = <SdkBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(Ok(frame)), Some(watcher)) = (&frame, this.watcher.as_mut()) {
            if let Some(data) = frame.data_ref() {
                if watcher.feed(data.chunk()) {
                    *this.watcher = None;
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
