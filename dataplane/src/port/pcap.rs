//! Capture files in the classic pcap format (Ethernet link type), read with
//! microsecond or nanosecond timestamps in either byte order, written with
//! nanosecond timestamps. For offline replay only: not a hot-path port.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::{Batch, Port, MAX_FRAME};

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads a capture's frames with their timestamps (nanoseconds since the epoch).
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    swapped: bool,
    nanos: bool,
    buf: Vec<u8>,
    /// Frames read so far.
    pub frames: u64,
}

impl Reader<BufReader<File>> {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file =
            File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Reader::new(BufReader::new(file))
    }
}

impl<R: Read> Reader<R> {
    /// Reads and checks the global header.
    pub fn new(mut input: R) -> io::Result<Self> {
        let mut header = [0u8; 24];
        input
            .read_exact(&mut header)
            .map_err(|_| invalid("not a pcap file: shorter than its 24-byte header".into()))?;
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let (swapped, nanos) = match magic {
            MAGIC_MICROS => (false, false),
            MAGIC_NANOS => (false, true),
            m if m.swap_bytes() == MAGIC_MICROS => (true, false),
            m if m.swap_bytes() == MAGIC_NANOS => (true, true),
            m => {
                return Err(invalid(format!(
                    "not a pcap file: magic number {m:#010x} (pcapng is not supported)"
                )))
            }
        };
        let r = Reader {
            input,
            swapped,
            nanos,
            buf: Vec::with_capacity(2048),
            frames: 0,
        };
        let linktype = r.u32(&header[20..24]) & 0x0fff_ffff;
        if linktype != LINKTYPE_ETHERNET {
            return Err(invalid(format!("link type {linktype} is not Ethernet (1)")));
        }
        Ok(r)
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if self.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }

    /// The next frame and its timestamp, or `None` at the end of the file.
    pub fn next_frame(&mut self) -> io::Result<Option<(&[u8], u64)>> {
        let mut header = [0u8; 16];
        match self.input.read_exact(&mut header[..1]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let record = self.frames + 1;
        self.input
            .read_exact(&mut header[1..])
            .map_err(|_| invalid(format!("record {record}: truncated record header")))?;
        let secs = u64::from(self.u32(&header[0..4]));
        let frac = u64::from(self.u32(&header[4..8]));
        let caplen = self.u32(&header[8..12]) as usize;
        if caplen > MAX_FRAME.max(65_535) {
            return Err(invalid(format!(
                "record {record}: captured length {caplen} is implausible"
            )));
        }
        self.buf.resize(caplen, 0);
        self.input.read_exact(&mut self.buf).map_err(|_| {
            invalid(format!(
                "record {record}: truncated frame ({caplen} bytes announced)"
            ))
        })?;
        self.frames = record;
        let time = secs * 1_000_000_000 + if self.nanos { frac } else { frac * 1000 };
        Ok(Some((&self.buf, time)))
    }
}

/// Writes a capture (nanosecond timestamps, Ethernet).
#[derive(Debug)]
pub struct Writer<W: Write> {
    output: W,
    pub frames: u64,
}

impl Writer<BufWriter<File>> {
    pub fn create(path: &Path) -> io::Result<Self> {
        let file =
            File::create(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Writer::new(BufWriter::new(file))
    }
}

impl<W: Write> Writer<W> {
    pub fn new(mut output: W) -> io::Result<Self> {
        let mut header = Vec::with_capacity(24);
        header.extend(MAGIC_NANOS.to_le_bytes());
        header.extend(2u16.to_le_bytes());
        header.extend(4u16.to_le_bytes());
        header.extend([0u8; 8]);
        header.extend(262_144u32.to_le_bytes());
        header.extend(LINKTYPE_ETHERNET.to_le_bytes());
        output.write_all(&header)?;
        Ok(Writer { output, frames: 0 })
    }

    pub fn write(&mut self, frame: &[u8], time: u64) -> io::Result<()> {
        let len = u32::try_from(frame.len()).map_err(|_| invalid("frame too long".into()))?;
        let secs = u32::try_from(time / 1_000_000_000).unwrap_or(u32::MAX);
        let nanos = (time % 1_000_000_000) as u32;
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&secs.to_le_bytes());
        header[4..8].copy_from_slice(&nanos.to_le_bytes());
        header[8..12].copy_from_slice(&len.to_le_bytes());
        header[12..16].copy_from_slice(&len.to_le_bytes());
        self.output.write_all(&header)?;
        self.output.write_all(frame)?;
        self.frames += 1;
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.output.flush()?;
        Ok(self.output)
    }
}

/// A capture as a port: receives the file's frames, transmits into another file.
#[derive(Debug)]
pub struct PcapPort<R: Read, W: Write> {
    pub reader: Option<Reader<R>>,
    pub writer: Option<Writer<W>>,
}

impl<R: Read, W: Write> Port for PcapPort<R, W> {
    fn receive(&mut self, batch: &mut Batch) -> io::Result<()> {
        batch.clear();
        let Some(reader) = self.reader.as_mut() else {
            return Ok(());
        };
        while !batch.is_full() {
            let Some((frame, time)) = reader.next_frame()? else {
                break;
            };
            batch.push(frame, time);
        }
        Ok(())
    }
    fn transmit(&mut self, frame: &[u8], time: u64) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.write(frame, time),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_both_byte_orders() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.write(&[1, 2, 3], 5_000_000_123).unwrap();
        w.write(&[4; 60], 6_000_000_000).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = Reader::new(bytes.as_slice()).unwrap();
        assert_eq!(r.next_frame().unwrap(), Some((&[1u8, 2, 3][..], 5_000_000_123)));
        assert_eq!(
            r.next_frame().unwrap().map(|(f, t)| (f.len(), t)),
            Some((60, 6_000_000_000))
        );
        assert_eq!(r.next_frame().unwrap(), None);
        // A big-endian microsecond capture, as some tools write.
        let mut be = Vec::new();
        be.extend(MAGIC_MICROS.to_be_bytes());
        be.extend([0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0, 1]);
        be.extend([0, 0, 0, 7, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 2, 0xaa, 0xbb]);
        let mut r = Reader::new(be.as_slice()).unwrap();
        assert_eq!(
            r.next_frame().unwrap(),
            Some((&[0xaau8, 0xbb][..], 7_000_009_000))
        );
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let err = |bytes: &[u8]| {
            Reader::new(bytes)
                .and_then(|mut r| r.next_frame().map(|_| ()))
                .unwrap_err()
                .to_string()
        };
        assert!(err(b"short").contains("shorter than its 24-byte header"));
        assert!(
            err(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .contains("pcapng")
        );
        let mut w = Writer::new(Vec::new()).unwrap();
        w.write(&[1; 10], 0).unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.truncate(bytes.len() - 3);
        assert!(err(&bytes).contains("record 1: truncated frame"));
        let mut raw = Writer::new(Vec::new()).unwrap().finish().unwrap();
        raw[20] = 101;
        assert!(err(&raw).contains("not Ethernet"));
    }
}
