//! Stages that forward without the security-group pipeline, for measuring
//! what the I/O alone costs: [`Blind`] looks at nothing, [`ReadHeader`] reads
//! each frame's Ethernet header as any forwarder must.

use rampart_dataplane::engine::Stage;
use rampart_dataplane::worker::{Fate, Side};

/// Every frame to the other port, nothing looked at: the I/O ceiling.
#[derive(Clone, Copy, Debug, Default)]
pub struct Blind {
    pub frames: u64,
}

impl Stage for Blind {
    fn process(&mut self, _now: u64, from: Side, frames: &[&[u8]], out: &mut [Fate]) {
        self.frames += frames.len() as u64;
        out[..frames.len()].fill(Fate::Forward(from.other()));
    }
}

/// A minimal forwarder that, like any bridge, reads each frame's Ethernet
/// header (destination MAC and ethertype) and sends the frame on to the other
/// port; nothing beyond, no state, no policy. Reading the header is what
/// separates it from [`Blind`]: in copy mode the kernel wrote the frame
/// on another core, so the first read of it is a cache miss any real
/// forwarder pays.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadHeader {
    pub frames: u64,
    /// A running sum of the headers read (kept so the reads are not optimised
    /// away).
    pub digest: u64,
}

impl Stage for ReadHeader {
    fn process(&mut self, _now: u64, from: Side, frames: &[&[u8]], out: &mut [Fate]) {
        self.frames += frames.len() as u64;
        for frame in frames {
            if let Some(header) = frame.get(..14) {
                let mac = u64::from_be_bytes([
                    0, 0, header[0], header[1], header[2], header[3], header[4], header[5],
                ]);
                self.digest = self
                    .digest
                    .wrapping_add(mac ^ u64::from(u16::from_be_bytes([header[12], header[13]])));
            }
        }
        out[..frames.len()].fill(Fate::Forward(from.other()));
    }
}
