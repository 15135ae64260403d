//! Fetching a payload from the provider in chunks, as the engine's fetch callback does.

use std::io::Write;

use crate::MAX_CHUNK;
use crate::messages::{ChunkRequest, NewFile};

/// Writes the payload of `file` into `out`, asking `chunk` for one piece after the other
/// (the proxy calls its provider's `chunk` method) and telling `progress` how many bytes
/// each brought. An empty piece ends the payload early (the engine then finds it short).
pub fn download(
    file: &NewFile,
    out: &mut dyn Write,
    mut chunk: impl FnMut(&ChunkRequest) -> Result<Vec<u8>, String>,
    mut progress: impl FnMut(u64),
) -> Result<(), String> {
    let mut offset = 0;
    while offset < file.size {
        let request = ChunkRequest {
            sha256: file.sha256,
            offset,
            len: MAX_CHUNK,
        };
        let bytes = chunk(&request)?;
        if bytes.is_empty() {
            break;
        }
        out.write_all(&bytes).map_err(|e| e.to_string())?;
        offset += bytes.len() as u64;
        progress(bytes.len() as u64);
    }
    Ok(())
}
