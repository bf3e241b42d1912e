//! Capture files in the classic pcap format (Ethernet link type), through
//! the `pcap-file` crate: read with microsecond or nanosecond timestamps in
//! either byte order, written with nanosecond timestamps. Errors say which
//! record is wrong.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

use super::port::{Batch, Port, MAX_FRAME};

/// The first bytes of a pcapng file, which is not read here.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// `e` as an I/O error, after `context`.
fn error(context: &str, e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) if e.kind() != io::ErrorKind::UnexpectedEof => {
            io::Error::new(e.kind(), format!("{context}: {e}"))
        }
        PcapError::IoError(_) | PcapError::IncompleteBuffer => invalid(format!("{context}: truncated")),
        other => invalid(format!("{context}: {other}")),
    }
}

/// Reads a capture's frames with their timestamps (nanoseconds since the epoch).
#[derive(Debug)]
pub struct Reader<R: Read> {
    input: PcapReader<io::Chain<io::Cursor<Vec<u8>>, R>>,
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
        let mut header = vec![0u8; 24];
        input
            .read_exact(&mut header)
            .map_err(|_| invalid("not a pcap file: shorter than its 24-byte header".into()))?;
        if header[..4] == PCAPNG_MAGIC {
            return Err(invalid(
                "not a pcap file: it is pcapng, which is not supported".into(),
            ));
        }
        let input =
            PcapReader::new(io::Cursor::new(header).chain(input)).map_err(|e| error("not a pcap file", e))?;
        let linktype = input.header().datalink;
        if linktype != DataLink::ETHERNET {
            return Err(invalid(format!(
                "link type {} is not Ethernet (1)",
                u32::from(linktype)
            )));
        }
        Ok(Reader {
            input,
            buf: Vec::with_capacity(2048),
            frames: 0,
        })
    }

    /// The next frame and its timestamp, or `None` at the end of the file.
    pub fn next_frame(&mut self) -> io::Result<Option<(&[u8], u64)>> {
        let record = self.frames + 1;
        let Some(packet) = self.input.next_packet() else {
            return Ok(None);
        };
        let packet = packet.map_err(|e| error(&format!("record {record}"), e))?;
        if packet.data.len() > MAX_FRAME.max(65_535) {
            return Err(invalid(format!(
                "record {record}: captured length {} is implausible",
                packet.data.len()
            )));
        }
        let time = u64::try_from(packet.timestamp.as_nanos()).unwrap_or(u64::MAX);
        self.buf.clear();
        self.buf.extend_from_slice(&packet.data);
        self.frames = record;
        Ok(Some((&self.buf, time)))
    }
}

/// Writes a capture (nanosecond timestamps, Ethernet, little-endian).
#[derive(Debug)]
pub struct Writer<W: Write> {
    output: PcapWriter<W>,
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
    pub fn new(output: W) -> io::Result<Self> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: 262_144,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::Little,
        };
        let output =
            PcapWriter::with_header(output, header).map_err(|e| error("writing the capture header", e))?;
        Ok(Writer { output, frames: 0 })
    }

    pub fn write(&mut self, frame: &[u8], time: u64) -> io::Result<()> {
        let len = u32::try_from(frame.len()).map_err(|_| invalid("frame too long".into()))?;
        let packet = PcapPacket::new(Duration::from_nanos(time), len, frame);
        self.output
            .write_packet(&packet)
            .map_err(|e| error(&format!("record {}", self.frames + 1), e))?;
        self.frames += 1;
        Ok(())
    }

    pub fn finish(self) -> io::Result<W> {
        let mut output = self.output.into_writer();
        output.flush()?;
        Ok(output)
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
        be.extend(0xa1b2_c3d4u32.to_be_bytes());
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
        let e = err(&bytes);
        assert!(e.contains("record 1: truncated"), "{e}");
        // A record that claims 4 GB: refused, never allocated.
        let mut huge = Writer::new(Vec::new()).unwrap().finish().unwrap();
        huge.extend([0; 8]);
        huge.extend(0xffff_fff0u32.to_le_bytes());
        huge.extend(0xffff_fff0u32.to_le_bytes());
        huge.extend([0; 64]);
        let e = err(&huge);
        assert!(e.contains("record 1"), "{e}");
        let mut raw = Writer::new(Vec::new()).unwrap().finish().unwrap();
        raw[20] = 101;
        assert!(err(&raw).contains("not Ethernet"));
    }
}
