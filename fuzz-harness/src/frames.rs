//! Fuzz target `frames`: arbitrary bytes through the frame codec and every decoder of
//! network input (`Request`, `Response`, `Hello`, and the provider protocol's
//! `ProviderHello`, `Call`, `Reply`).
//!
//! Oracle: nothing panics; splitting refuses only oversized headers and accounts for every
//! byte; a decoded value re-encodes, as a value and as a frame, and decodes to itself.

use courier_protocol::codec::{self, CodecError};
use courier_protocol::limits::{FRAME_HEADER_LEN, MAX_FRAME_LEN};
use courier_protocol::provider::{Call, ProviderHello, Reply};
use courier_protocol::{Hello, Request, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// A small cap, so that inputs reach the "too large" refusal as well as whole frames.
const SMALL_CAP: usize = 64;

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    for max in [SMALL_CAP, MAX_FRAME_LEN] {
        split_all(data, max);
    }
    decode_all(data);
}

/// Splits frames off the front of `data` until it needs more bytes or refuses a header.
fn split_all(data: &[u8], max: usize) {
    let mut rest = data;
    loop {
        match codec::split_frame(rest, max) {
            Ok(Some((body, tail))) => {
                assert!(body.len() <= max, "a frame body exceeds the cap");
                assert_eq!(
                    FRAME_HEADER_LEN + body.len() + tail.len(),
                    rest.len(),
                    "split_frame lost or invented bytes"
                );
                decode_all(body);
                if tail.len() == rest.len() {
                    break;
                }
                rest = tail;
            }
            Ok(None) => {
                if rest.len() >= FRAME_HEADER_LEN {
                    let announced = header_len(rest);
                    assert!(announced <= max, "an oversized header was not refused");
                    assert!(
                        announced > rest.len() - FRAME_HEADER_LEN,
                        "a complete frame was not split off"
                    );
                }
                break;
            }
            Err(CodecError::FrameTooLarge { len, max: cap }) => {
                assert_eq!(cap, max);
                assert!(len > max, "a frame within the cap was refused");
                assert_eq!(len, header_len(rest));
                break;
            }
            Err(other) => panic!("split_frame refused something other than a length: {other}"),
        }
    }
}

fn header_len(buf: &[u8]) -> usize {
    let mut header = [0u8; FRAME_HEADER_LEN];
    header.copy_from_slice(&buf[..FRAME_HEADER_LEN]);
    u32::from_be_bytes(header) as usize
}

/// Tries every decoder of network input on `body`.
fn decode_all(body: &[u8]) {
    round_trip::<Request>(body);
    round_trip::<Response>(body);
    round_trip::<Hello>(body);
    round_trip::<ProviderHello>(body);
    round_trip::<Call>(body);
    round_trip::<Reply>(body);
}

/// If `bytes` decode as a `T`, its encoding decodes to the same value, and so does its
/// frame.
fn round_trip<T>(bytes: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let value = match codec::decode::<T>(bytes) {
        Ok(v) => v,
        Err(CodecError::FrameTooLarge { .. }) => {
            panic!("decode reported a frame error for a body")
        }
        Err(_) => return,
    };
    let encoded = codec::encode(&value);
    assert!(
        encoded.len() <= bytes.len(),
        "re-encoding grew: {} bytes from {}",
        encoded.len(),
        bytes.len()
    );
    match codec::decode::<T>(&encoded) {
        Ok(again) => assert_eq!(again, value, "a value changed through encode and decode"),
        Err(e) => panic!("the encoding of a decoded value does not decode: {e}"),
    }
    let frame = codec::encode_frame(&value);
    match codec::split_frame(&frame, MAX_FRAME_LEN) {
        Ok(Some((body, []))) => assert_eq!(body, &encoded[..], "frame body differs"),
        other => panic!("a frame of a decoded value does not split back: {other:?}"),
    }
}
