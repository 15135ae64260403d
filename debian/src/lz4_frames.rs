//! A reader that walks the LZ4 frame format's structure as the compressed bytes pass
//! through, so a file cut short is an error. `lz4_flex`'s frame decoder takes the end of
//! its input at a block boundary for the end of the data, and apt's `.lz4` lists carry no
//! content size or checksum that would catch it.
//!
//! The structure (lz4's `lz4_Frame_format.md`): a magic number, a descriptor (FLG, BD,
//! optional content size and dictionary id, a header checksum), blocks each led by a
//! 4-byte little-endian size (high bit: stored uncompressed) and followed by a 4-byte
//! checksum when FLG says so, a zero size as end mark, and a 4-byte content checksum when
//! FLG says so. Frames may follow one another; skippable frames are a magic and a size.

use std::io::{self, Read};

const FRAME_MAGIC: u32 = 0x184D_2204;
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;

/// Passes `R`'s bytes on unchanged and fails with [`io::ErrorKind::InvalidData`] when they
/// end anywhere but between two frames.
pub(crate) struct CheckedFrames<R> {
    inner: R,
    state: State,
    /// Bytes of a fixed-size field gathered so far.
    field: [u8; 8],
    filled: usize,
    /// FLG of the current frame.
    flags: u8,
    /// Whether any frame started (an empty input is not a valid file either).
    started: bool,
}

/// Where in the frame format the next byte belongs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// A frame's magic number (4 bytes), or the end of the input.
    Magic,
    /// FLG and BD (2 bytes).
    Descriptor,
    /// The rest of the header: content size, dictionary id, header checksum.
    HeaderRest(usize),
    /// A block's size (4 bytes), or the end mark.
    BlockSize,
    /// Bytes to pass over (block data and checksum, content checksum, a skippable frame),
    /// then a block size or, when `then_magic`, a new frame.
    Skip { left: u64, then_magic: bool },
    /// A skippable frame's size (4 bytes).
    SkippableSize,
}

impl<R: Read> CheckedFrames<R> {
    pub(crate) fn new(inner: R) -> Self {
        CheckedFrames {
            inner,
            state: State::Magic,
            field: [0; 8],
            filled: 0,
            flags: 0,
            started: false,
        }
    }

    /// Walks `bytes` through the format.
    fn walk(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if let State::Skip { left, then_magic } = self.state {
                let take = left.min(bytes.len() as u64);
                bytes = &bytes[take as usize..];
                self.state = skip(left - take, then_magic);
                continue;
            }
            let need = match self.state {
                State::Magic | State::BlockSize | State::SkippableSize => 4,
                State::Descriptor => 2,
                State::HeaderRest(n) => n,
                State::Skip { .. } => 0,
            };
            let take = (need - self.filled).min(bytes.len());
            self.field[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled == need {
                self.filled = 0;
                self.advance()?;
            }
        }
        Ok(())
    }

    /// Acts on a complete fixed-size field.
    fn advance(&mut self) -> io::Result<()> {
        let word = u32::from_le_bytes([self.field[0], self.field[1], self.field[2], self.field[3]]);
        self.state = match self.state {
            State::Magic if word == FRAME_MAGIC => {
                self.started = true;
                State::Descriptor
            }
            State::Magic if word & SKIPPABLE_MASK == SKIPPABLE_MAGIC => State::SkippableSize,
            State::Magic => return Err(invalid("not an lz4 frame")),
            State::SkippableSize => skip(u64::from(word), true),
            State::Descriptor => {
                self.flags = self.field[0];
                if self.flags >> 6 != 1 {
                    return Err(invalid("unknown lz4 frame version"));
                }
                let size = if self.flags & 0x08 != 0 { 8 } else { 0 };
                let dict = if self.flags & 0x01 != 0 { 4 } else { 0 };
                State::HeaderRest(size + dict + 1)
            }
            State::HeaderRest(_) => State::BlockSize,
            State::BlockSize if word == 0 => {
                let checksum = if self.flags & 0x04 != 0 { 4 } else { 0 };
                skip(checksum, true)
            }
            State::BlockSize => {
                let checksum = if self.flags & 0x10 != 0 { 4 } else { 0 };
                skip(u64::from(word & 0x7FFF_FFFF) + checksum, false)
            }
            State::Skip { .. } => skip(0, false),
        };
        Ok(())
    }
}

/// Passing over `left` bytes, or what follows them when there are none.
fn skip(left: u64, then_magic: bool) -> State {
    match (left, then_magic) {
        (0, true) => State::Magic,
        (0, false) => State::BlockSize,
        _ => State::Skip { left, then_magic },
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl<R: Read> Read for CheckedFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if !self.started {
                return Err(invalid("empty lz4 file"));
            }
            if self.state != State::Magic || self.filled != 0 {
                return Err(invalid("lz4 data cut short (truncated file)"));
            }
            return Ok(0);
        }
        self.walk(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame with one 3-byte stored block, a block checksum and a content checksum, a
    /// skippable frame, then a frame with no checksums and no blocks.
    const FRAMES: &[u8] = &[
        0x04, 0x22, 0x4D, 0x18, 0x54, 0x40, 0xAA, // magic, FLG (checksums), BD, HC
        0x03, 0x00, 0x00, 0x80, b'a', b'b', b'c', 1, 2, 3, 4, // stored block + checksum
        0, 0, 0, 0, 9, 9, 9, 9, // end mark, content checksum
        0x50, 0x2A, 0x4D, 0x18, 0x02, 0, 0, 0, 7, 7, // skippable frame of 2 bytes
        0x04, 0x22, 0x4D, 0x18, 0x40, 0x40, 0xC0, 0, 0, 0, 0, // empty frame
    ];

    fn read_through(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        CheckedFrames::new(bytes).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn passes_whole_frames_and_refuses_every_cut() {
        assert_eq!(read_through(FRAMES).expect("whole frames"), FRAMES);
        let boundaries = [26, 36];
        for cut in 0..FRAMES.len() {
            let result = read_through(&FRAMES[..cut]);
            assert_eq!(result.is_ok(), boundaries.contains(&cut), "cut at {cut}");
        }
        assert!(read_through(b"not lz4 at all").is_err());
    }
}
