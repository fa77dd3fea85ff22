//! Container log files in the kubelet's CRI format, and reading them back the way
//! `kubectl logs` shows them.
//!
//! Every record is one line of the file:
//!
//! ```text
//! 2026-11-25T07:00:00.123456789Z stdout F message
//! ```
//!
//! `F` marks the end of a line the program wrote; `P` marks a piece of a longer line (the
//! program wrote more than [`MAX_RECORD`] bytes without a newline, or the container ended in
//! the middle of a line). Readers join `P` records with what follows, so the bytes a reader
//! returns are exactly the bytes the program wrote. Using the kubelet's format keeps the files
//! readable by the usual tools (`crictl logs`, log shippers that tail `/var/log/pods`).
//!
//! Writers ([`LogFile`]) are synchronous and cheap: a buffered file behind a mutex, flushed at
//! the end of every write call so followers see lines promptly. Readers ([`read`]) are tokio
//! tasks feeding a channel.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Longest message a single record carries; longer lines are split into `P` records. This is
/// the kubelet's/containerd's limit, so files look the same as theirs.
pub const MAX_RECORD: usize = 16 * 1024;

/// How often a follower looks for new data once it has reached the end of the file.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// Which output of the program a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Where a container's output goes. Implementations must never panic and must not block
/// for long: they are called from inside the runtime while the guest waits.
pub trait LogSink: Send + Sync {
    /// Appends what the program wrote to `stream`.
    fn write(&self, stream: Stream, bytes: &[u8]);
    /// The container ended: write out any partial lines. Later writes are ignored.
    fn close(&self);
}

/// One container's log file `<dir>/<restartCount>.log`, rotated at `max_bytes` keeping at
/// most `max_files` files (the current one included), like the kubelet's
/// `containerLogMaxSize`/`containerLogMaxFiles`. Rotated files are named
/// `<restartCount>.log.<UTC timestamp>` so that sorting their names sorts them by age.
pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: usize,
    state: Mutex<WriterState>,
}

struct WriterState {
    file: BufWriter<File>,
    /// Bytes in the current file.
    size: u64,
    /// Per stream (stdout, stderr): the start of a line not yet ended by a newline.
    pending: [Vec<u8>; 2],
    closed: bool,
    /// Set after the first I/O error so a full disk logs one warning, not one per write.
    failed: bool,
}

impl LogFile {
    /// Opens (appending, so an agent restart does not lose output) or creates
    /// `<dir>/<restart_count>.log`, creating `dir` if needed.
    pub fn create(
        dir: &Path,
        restart_count: u32,
        max_bytes: u64,
        max_files: usize,
    ) -> io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{restart_count}.log"));
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(Arc::new(LogFile {
            path,
            max_bytes: max_bytes.max(1),
            max_files: max_files.max(1),
            state: Mutex::new(WriterState {
                file: BufWriter::new(file),
                size,
                pending: [Vec::new(), Vec::new()],
                closed: false,
                failed: false,
            }),
        }))
    }

    /// The current file (what [`read`] wants).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, WriterState> {
        // A panic while holding the lock cannot leave the state inconsistent in a way that
        // matters for logs (worst case a record is cut), so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, st: &mut WriterState, ts: &str, stream: Stream, tag: &str, msg: &[u8]) {
        let len = (ts.len() + stream.as_str().len() + tag.len() + msg.len() + 4) as u64;
        if st.size > 0 && st.size + len > self.max_bytes {
            if let Err(e) = self.rotate(st) {
                self.failed(st, "rotating", &e);
            }
        }
        let res = (|| {
            st.file.write_all(ts.as_bytes())?;
            st.file.write_all(b" ")?;
            st.file.write_all(stream.as_str().as_bytes())?;
            st.file.write_all(b" ")?;
            st.file.write_all(tag.as_bytes())?;
            st.file.write_all(b" ")?;
            st.file.write_all(msg)?;
            st.file.write_all(b"\n")
        })();
        match res {
            Ok(()) => st.size += len,
            Err(e) => self.failed(st, "writing", &e),
        }
    }

    fn failed(&self, st: &mut WriterState, what: &str, e: &io::Error) {
        if !st.failed {
            st.failed = true;
            tracing::warn!(path = %self.path.display(), error = %e, "{what} container log failed; further errors are not reported");
        }
    }

    /// Renames the current file aside and starts a new one, then drops the oldest rotated
    /// files beyond `max_files`.
    fn rotate(&self, st: &mut WriterState) -> io::Result<()> {
        st.file.flush()?;
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S%.9f").to_string();
        let mut rotated = suffixed(&self.path, &stamp);
        let mut n = 1;
        while rotated.exists() {
            rotated = suffixed(&self.path, &format!("{stamp}-{n}"));
            n += 1;
        }
        std::fs::rename(&self.path, &rotated)?;
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        st.file = BufWriter::new(file);
        st.size = 0;
        let mut old = rotated_files(&self.path)?;
        let keep = self.max_files - 1;
        if old.len() > keep {
            let excess = old.len() - keep;
            for p in old.drain(..excess) {
                if let Err(e) = std::fs::remove_file(&p) {
                    tracing::warn!(path = %p.display(), error = %e, "removing rotated log failed");
                }
            }
        }
        Ok(())
    }

    fn flush(&self, st: &mut WriterState) {
        if let Err(e) = st.file.flush() {
            self.failed(st, "flushing", &e);
        }
    }
}

impl LogSink for LogFile {
    fn write(&self, stream: Stream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.closed {
            return;
        }
        let ts = now_timestamp();
        let idx = stream.index();
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut st.pending[idx]);
            line.extend_from_slice(&rest[..nl]);
            rest = &rest[nl + 1..];
            let mut chunks = line.as_slice();
            while chunks.len() > MAX_RECORD {
                let (head, tail) = chunks.split_at(MAX_RECORD);
                self.emit(st, &ts, stream, "P", head);
                chunks = tail;
            }
            self.emit(st, &ts, stream, "F", chunks);
        }
        if !rest.is_empty() {
            let mut pending = std::mem::take(&mut st.pending[idx]);
            pending.extend_from_slice(rest);
            let mut start = 0;
            while pending.len() - start >= MAX_RECORD {
                self.emit(st, &ts, stream, "P", &pending[start..start + MAX_RECORD]);
                start += MAX_RECORD;
            }
            pending.drain(..start);
            st.pending[idx] = pending;
        }
        self.flush(st);
    }

    fn close(&self) {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.closed {
            return;
        }
        let ts = now_timestamp();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = std::mem::take(&mut st.pending[stream.index()]);
            if !pending.is_empty() {
                self.emit(st, &ts, stream, "P", &pending);
            }
        }
        self.flush(st);
        st.closed = true;
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        self.close();
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// The rotated predecessors of `current` (`<current>.<stamp>`), oldest first.
fn rotated_files(current: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (current.parent(), current.file_name()) else {
        return Ok(Vec::new());
    };
    let mut prefix = name.to_owned();
    prefix.push(".");
    let prefix = prefix.to_string_lossy().into_owned();
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name.starts_with(&prefix) && file_name.len() > prefix.len() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// RFC3339 with a fixed nine-digit fraction (so records line up and sort as text).
fn now_timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

/// What [`read`] returns and how (the query parameters of `kubectl logs`).
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Keep streaming as the file grows until the `stop` future passed to [`read`] resolves.
    pub follow: bool,
    /// Only the last N lines (of what is there when reading starts).
    pub tail_lines: Option<usize>,
    /// Only records written at or after this time.
    pub since: Option<SystemTime>,
    /// Prefix each line with its RFC3339Nano timestamp and a space.
    pub timestamps: bool,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<usize>,
}

/// The stream [`read`] returns: a [`futures::Stream`] of output chunks (it wraps a tokio mpsc
/// receiver; the reading happens in a spawned task that ends when the stream is dropped).
pub type LogStream = tokio_stream::wrappers::ReceiverStream<io::Result<Bytes>>;

/// Reads a container's log (its rotated predecessors, then `path_of_current`) as
/// `kubectl logs` shows it: the message bytes only (with each line's timestamp prefix when
/// `opts.timestamps`), partial records joined.
///
/// With `opts.follow` the stream keeps going as the file grows (also across rotations) until
/// `stop` resolves — pass a future that resolves when the container has ended and its
/// [`LogSink::close`] has run; everything written before that is still delivered. Without
/// follow, `stop` is ignored.
///
/// Must be called from within a tokio runtime (the reading is a spawned task). A missing
/// current file is not an error for followers (it may not have been created yet); without
/// follow it yields one `NotFound` error.
pub fn read(
    path_of_current: &Path,
    opts: ReadOptions,
    stop: impl Future<Output = ()> + Send + 'static,
) -> LogStream {
    let (tx, rx) = mpsc::channel(16);
    let path = path_of_current.to_path_buf();
    tokio::spawn(async move {
        let mut reader = Reader::new(opts, tx.clone());
        if let Err(e) = reader.run(&path, stop).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// One parsed record.
struct Record {
    ts: Bytes,
    partial: bool,
    msg: Bytes,
}

/// Why reading ended early (nobody listens any more, or the byte limit is reached).
struct Done;

struct Reader {
    opts: ReadOptions,
    tx: mpsc::Sender<io::Result<Bytes>>,
    at_line_start: bool,
    bytes_left: Option<usize>,
    /// Output gathered but not yet sent (sent in chunks of about 32 KiB).
    out: BytesMut,
}

impl Reader {
    fn new(opts: ReadOptions, tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        let bytes_left = opts.limit_bytes;
        Reader {
            opts,
            tx,
            at_line_start: true,
            bytes_left,
            out: BytesMut::new(),
        }
    }

    async fn run(
        &mut self,
        path: &Path,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        match self.run_inner(path, stop).await {
            Ok(()) | Err(ReadError::Done) => {
                let _ = self.send_out().await;
                Ok(())
            }
            Err(ReadError::Io(e)) => {
                let _ = self.send_out().await;
                Err(e)
            }
        }
    }

    async fn run_inner(
        &mut self,
        path: &Path,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ReadError> {
        if self.bytes_left == Some(0) {
            return Ok(());
        }
        // History: rotated files, then the current file up to its end right now.
        let mut tail: Option<VecDeque<Vec<Record>>> = self.opts.tail_lines.map(|_| VecDeque::new());
        let mut line: Vec<Record> = Vec::new();
        let mut history = |rec: Record, this: &mut Reader| -> Result<(), Done> {
            match (&mut tail, this.opts.tail_lines) {
                (Some(lines), Some(n)) => {
                    let partial = rec.partial;
                    line.push(rec);
                    if !partial {
                        lines.push_back(std::mem::take(&mut line));
                        if lines.len() > n {
                            lines.pop_front();
                        }
                    }
                    Ok(())
                }
                _ => this.record(rec),
            }
        };
        for p in rotated_files(path)? {
            let mut file = match tokio::fs::File::open(&p).await {
                Ok(f) => f,
                // Rotated away and deleted between listing and opening.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let mut buf = BytesMut::new();
            read_records(&mut file, &mut buf, |rec| history(rec, self)).await?;
            self.send_if_big().await?;
        }
        let mut current = match tokio::fs::File::open(path).await {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.opts.follow => None,
            Err(e) => return Err(e.into()),
        };
        let mut buf = BytesMut::new();
        if let Some(file) = current.as_mut() {
            read_records(file, &mut buf, |rec| history(rec, self)).await?;
        }
        if let Some(mut lines) = tail {
            if !line.is_empty() {
                lines.push_back(std::mem::take(&mut line));
                if lines.len() > self.opts.tail_lines.unwrap_or(0) {
                    lines.pop_front();
                }
            }
            for rec in lines.into_iter().flatten() {
                self.record(rec)?;
            }
        } else {
            for rec in line {
                self.record(rec)?;
            }
        }
        self.send_out().await?;
        if !self.opts.follow {
            return Ok(());
        }

        // Follow: poll for growth and rotation until `stop`, then drain once more.
        let mut stop = std::pin::pin!(stop);
        let mut stopping = false;
        loop {
            if current.is_none() {
                current = open_if_exists(path).await?;
            }
            if let Some(file) = current.as_mut() {
                read_records(file, &mut buf, |rec| self.record(rec)).await?;
                if let Some(newer) = self.rotated_away(path, file).await? {
                    // Whatever was appended before the rename is still in the old file.
                    read_records(file, &mut buf, |rec| self.record(rec)).await?;
                    let (next, newer) = newer;
                    for p in newer {
                        if let Some(mut f) = open_if_exists(&p).await? {
                            let mut b = BytesMut::new();
                            read_records(&mut f, &mut b, |rec| self.record(rec)).await?;
                            self.send_if_big().await?;
                        }
                    }
                    buf.clear();
                    current = Some(next);
                    if let Some(file) = current.as_mut() {
                        read_records(file, &mut buf, |rec| self.record(rec)).await?;
                    }
                }
            }
            self.send_out().await?;
            if stopping {
                return Ok(());
            }
            tokio::select! {
                _ = &mut stop => stopping = true,
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = self.tx.closed() => return Err(ReadError::Done),
            }
        }
    }

    /// If `path` now names a different file than the open `file` (it was rotated, perhaps
    /// several times), returns the new current file, opened, and the rotated files written
    /// between ours and it, oldest first. The new file is opened before listing so that a
    /// rotation racing with us is seen either in the list or through the open handle.
    async fn rotated_away(
        &self,
        path: &Path,
        file: &tokio::fs::File,
    ) -> io::Result<Option<(tokio::fs::File, Vec<PathBuf>)>> {
        use std::os::unix::fs::MetadataExt;
        let ours = file.metadata().await?;
        let Ok(named) = tokio::fs::metadata(path).await else {
            // The name is gone for a moment (mid-rotation): look again next time.
            return Ok(None);
        };
        if named.ino() == ours.ino() && named.dev() == ours.dev() {
            return Ok(None);
        }
        let Some(next) = open_if_exists(path).await? else {
            return Ok(None);
        };
        let next_meta = next.metadata().await?;
        let mut newer = Vec::new();
        let mut seen_ours = false;
        for p in rotated_files(path)? {
            let Ok(m) = std::fs::metadata(&p) else {
                continue;
            };
            if m.ino() == ours.ino() && m.dev() == ours.dev() {
                seen_ours = true;
            } else if seen_ours && !(m.ino() == next_meta.ino() && m.dev() == next_meta.dev()) {
                newer.push(p);
            }
        }
        Ok(Some((next, newer)))
    }

    /// Formats one record into the output buffer.
    fn record(&mut self, rec: Record) -> Result<(), Done> {
        if let Some(since) = self.opts.since {
            if parse_ts(&rec.ts).is_some_and(|t| t < since) {
                return Ok(());
            }
        }
        if self.opts.timestamps && self.at_line_start {
            self.push(&rec.ts)?;
            self.push(b" ")?;
        }
        self.push(&rec.msg)?;
        if !rec.partial {
            self.push(b"\n")?;
        }
        self.at_line_start = !rec.partial;
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), Done> {
        match &mut self.bytes_left {
            None => {
                self.out.extend_from_slice(bytes);
                Ok(())
            }
            Some(left) => {
                let n = bytes.len().min(*left);
                self.out.extend_from_slice(&bytes[..n]);
                *left -= n;
                if *left == 0 {
                    Err(Done)
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn send_if_big(&mut self) -> Result<(), Done> {
        if self.out.len() >= 32 * 1024 {
            self.send_out().await
        } else {
            Ok(())
        }
    }

    async fn send_out(&mut self) -> Result<(), Done> {
        if self.out.is_empty() {
            return Ok(());
        }
        let chunk = self.out.split().freeze();
        self.tx.send(Ok(chunk)).await.map_err(|_| Done)
    }
}

enum ReadError {
    Done,
    Io(io::Error),
}

impl From<Done> for ReadError {
    fn from(_: Done) -> Self {
        ReadError::Done
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

async fn open_if_exists(path: &Path) -> io::Result<Option<tokio::fs::File>> {
    match tokio::fs::File::open(path).await {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `file` from its current position to its end, handing every complete record to
/// `each`. An incomplete last line (the writer is mid-record) stays in `buf` for next time.
async fn read_records(
    file: &mut tokio::fs::File,
    buf: &mut BytesMut,
    mut each: impl FnMut(Record) -> Result<(), Done>,
) -> Result<(), ReadError> {
    loop {
        buf.reserve(64 * 1024);
        let n = file.read_buf(buf).await?;
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line = buf.split_to(nl + 1).freeze();
            if let Some(rec) = parse_record(line.slice(..nl)) {
                each(rec)?;
            }
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// Parses `<timestamp> <stream> <tag> <message>`; anything else is skipped (returns None).
fn parse_record(line: Bytes) -> Option<Record> {
    let sp1 = line.iter().position(|&b| b == b' ')?;
    let after_ts = sp1 + 1;
    let sp2 = after_ts + line[after_ts..].iter().position(|&b| b == b' ')?;
    let stream = &line[after_ts..sp2];
    if stream != b"stdout" && stream != b"stderr" {
        return None;
    }
    let after_stream = sp2 + 1;
    let (tag_end, msg_start) = match line[after_stream..].iter().position(|&b| b == b' ') {
        Some(i) => (after_stream + i, after_stream + i + 1),
        None => (line.len(), line.len()),
    };
    // Tags may carry more after a ':' (CRI allows `P:...`); the first is what counts.
    let tag = line[after_stream..tag_end].split(|&b| b == b':').next()?;
    let partial = match tag {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Record {
        ts: line.slice(..sp1),
        partial,
        msg: line.slice(msg_start..),
    })
}

fn parse_ts(ts: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(ts).ok()?;
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(SystemTime::from(t.with_timezone(&chrono::Utc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn collect(path: &Path, opts: ReadOptions) -> String {
        let mut s = read(path, opts, std::future::ready(()));
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.expect("read"));
        }
        String::from_utf8(out).expect("utf8")
    }

    fn file_lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogFile::create(dir.path(), 0, 1 << 20, 5).expect("create");
        log.write(Stream::Stdout, b"hello\nworld\n");
        log.write(Stream::Stderr, b"oops\n");
        log.write(Stream::Stdout, b"\n");
        log.close();
        let lines = file_lines(&dir.path().join("0.log"));
        assert_eq!(lines.len(), 4);
        let first: Vec<&str> = lines[0].splitn(4, ' ').collect();
        assert_eq!(first[1..], ["stdout", "F", "hello"]);
        assert!(parse_ts(first[0].as_bytes()).is_some(), "{}", first[0]);
        assert_eq!(first[0].len(), "2026-11-25T07:00:00.123456789Z".len());
        assert!(lines[2].contains(" stderr F oops"));
        assert!(lines[3].ends_with(" stdout F "));
        let out = collect(log.path(), ReadOptions::default()).await;
        assert_eq!(out, "hello\nworld\noops\n\n");
    }

    #[tokio::test]
    async fn partial_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogFile::create(dir.path(), 1, 1 << 20, 5).expect("create");
        log.write(Stream::Stdout, b"abc");
        log.write(Stream::Stdout, b"def\nghi");
        // Nothing of "ghi" is on disk before close.
        assert_eq!(file_lines(log.path()).len(), 1);
        let long = vec![b'x'; MAX_RECORD * 2 + 10];
        log.write(Stream::Stderr, &long);
        log.write(Stream::Stderr, b"\n");
        log.close();
        log.write(Stream::Stdout, b"ignored after close\n");
        let lines = file_lines(log.path());
        let tags: Vec<&str> = lines
            .iter()
            .map(|l| l.split(' ').nth(2).unwrap_or(""))
            .collect();
        // abcdef F, two 16 KiB P records of x, F with the last 10 x, then ghi P at close.
        assert_eq!(tags, ["F", "P", "P", "F", "P"]);
        let out = collect(log.path(), ReadOptions::default()).await;
        let expected = format!("abcdef\n{}\nghi", "x".repeat(MAX_RECORD * 2 + 10));
        assert_eq!(out, expected);
    }

    #[tokio::test]
    async fn tail_since_timestamps_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogFile::create(dir.path(), 0, 1 << 20, 5).expect("create");
        for i in 0..5 {
            log.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        std::thread::sleep(Duration::from_millis(20));
        let since = SystemTime::now();
        std::thread::sleep(Duration::from_millis(5));
        log.write(Stream::Stdout, b"late 1\nlate 2\n");
        log.close();

        let tail = ReadOptions {
            tail_lines: Some(3),
            ..Default::default()
        };
        assert_eq!(collect(log.path(), tail).await, "line 4\nlate 1\nlate 2\n");
        let zero = ReadOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert_eq!(collect(log.path(), zero).await, "");

        let since_opts = ReadOptions {
            since: Some(since),
            ..Default::default()
        };
        assert_eq!(collect(log.path(), since_opts).await, "late 1\nlate 2\n");

        let ts = ReadOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        let out = collect(log.path(), ts).await;
        let (stamp, msg) = out.split_once(' ').expect("timestamp prefix");
        assert_eq!(msg, "late 2\n");
        let t = parse_ts(stamp.as_bytes()).expect("rfc3339");
        assert!(t >= since);

        let limit = ReadOptions {
            limit_bytes: Some(10),
            ..Default::default()
        };
        assert_eq!(collect(log.path(), limit).await, "line 0\nlin");
    }

    #[tokio::test]
    async fn rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Each record is ~40 bytes; rotate every ~3 records, keep 3 files.
        let log = LogFile::create(dir.path(), 2, 130, 3).expect("create");
        let mut expected = String::new();
        for i in 0..20 {
            let line = format!("msg {i:02}\n");
            log.write(Stream::Stdout, line.as_bytes());
            expected.push_str(&line);
        }
        log.close();
        let rotated = rotated_files(log.path()).expect("list");
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        for p in rotated
            .iter()
            .chain(std::iter::once(&log.path().to_path_buf()))
        {
            let len = std::fs::metadata(p).expect("meta").len();
            assert!(len <= 130, "{} is {len} bytes", p.display());
        }
        let out = collect(log.path(), ReadOptions::default()).await;
        assert!(expected.ends_with(&out), "{out:?}");
        assert!(out.ends_with("msg 19\n"));
        assert!(out.lines().count() >= 6, "{out:?}");
        // Lines come back in order across files.
        let nums: Vec<u32> = out.lines().map(|l| l[4..].parse().expect("num")).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    }

    #[tokio::test]
    async fn follow_sees_appended_lines_and_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogFile::create(dir.path(), 0, 200, 10).expect("create");
        log.write(Stream::Stdout, b"before\n");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut s = read(
            log.path(),
            ReadOptions {
                follow: true,
                ..Default::default()
            },
            async move {
                let _ = stop_rx.await;
            },
        );
        let mut got = Vec::new();
        let first = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("timely")
            .expect("item")
            .expect("ok");
        got.extend_from_slice(&first);
        assert_eq!(got, b"before\n");
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    log.write(Stream::Stdout, format!("after {i}\n").as_bytes());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                log.write(Stream::Stdout, b"tail without newline");
                log.close();
            })
        };
        writer.await.expect("writer");
        let _ = stop_tx.send(());
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("stream ends after stop")
        {
            got.extend_from_slice(&chunk.expect("ok"));
        }
        let mut expected = String::from("before\n");
        for i in 0..20 {
            expected.push_str(&format!("after {i}\n"));
        }
        expected.push_str("tail without newline");
        assert_eq!(String::from_utf8(got).expect("utf8"), expected);
        assert!(!rotated_files(log.path()).expect("list").is_empty());
    }

    #[tokio::test]
    async fn missing_file_without_follow_is_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = read(
            &dir.path().join("0.log"),
            ReadOptions::default(),
            std::future::ready(()),
        );
        let err = s.next().await.expect("item").expect_err("error");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse_record(Bytes::from_static(b"garbage")).is_none());
        assert!(parse_record(Bytes::from_static(b"ts stdin F x")).is_none());
        let r = parse_record(Bytes::from_static(b"ts stdout F")).expect("empty message");
        assert!(r.msg.is_empty() && !r.partial);
        let r = parse_record(Bytes::from_static(b"ts stderr P:x a b")).expect("tag with extras");
        assert!(r.partial);
        assert_eq!(&r.msg[..], b"a b");
    }
}
