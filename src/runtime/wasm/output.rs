//! The guest's stdout/stderr, going straight to the container's [`LogSink`].
//!
//! Both WASI versions get their stdio from a [`StdoutStream`]: p1's `fd_write` and p2's
//! `wasi:cli/stdout` both use its [`OutputStream`] (`p2_stream`); `async_stream` serves the
//! p3-style users. Writes are synchronous: the sink is a buffered file behind a mutex, so
//! there is no point in a queue, and the guest can never get ahead of its logs.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::runtime::logs::{LogSink, Stream};

/// Most bytes a guest may hand over in one write (what `check_write` permits).
const WRITE_PERMIT: usize = 64 * 1024;

#[derive(Clone)]
pub(crate) struct LogOutput {
    sink: Arc<dyn LogSink>,
    stream: Stream,
}

impl LogOutput {
    pub(crate) fn new(sink: Arc<dyn LogSink>, stream: Stream) -> Self {
        LogOutput { sink, stream }
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for LogOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.sink.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for LogOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.sink.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
