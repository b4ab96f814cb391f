//! The pool's reply decoder, for the fuzz targets (not part of the API).

use super::frame;

/// Reads `bytes` as a worker's output: frames one after another, each a RESULTS body holding
/// `expected` replies. Returns how many frames decoded before the first malformed or
/// incomplete one. Never panics, whatever the bytes.
pub fn decode_replies(bytes: &[u8], expected: u32) -> usize {
    let mut start = 0;
    let mut frames = 0;
    while let Ok(Some(f)) = frame::next_frame(&bytes[start..]) {
        let body = start + f.body.start..start + f.body.end;
        if frame::parse_replies(&bytes[body.clone()], expected).is_err() {
            break;
        }
        start = body.end;
        frames += 1;
    }
    frames
}

/// Encodes `results` (each `Ok(bytes)` a returned value, `Err(message)` a panic) as one RESULTS
/// frame, decodes it again and says whether the decoded replies equal the originals.
pub fn round_trip(results: &[Result<Vec<u8>, String>]) -> bool {
    let mut buf = Vec::new();
    let start = frame::begin(&mut buf, frame::KIND_RESULTS, 7);
    buf.extend_from_slice(&(results.len() as u32).to_le_bytes());
    let replies: Vec<frame::Reply> = results
        .iter()
        .map(|r| match r {
            Ok(b) => frame::Reply::Returned(b.clone()),
            Err(m) => frame::Reply::Panicked(m.clone()),
        })
        .collect();
    for r in &replies {
        frame::push_failure(&mut buf, r);
    }
    frame::finish(&mut buf, start);
    match frame::next_frame(&buf) {
        Ok(Some(f)) if f.id == 7 && f.body.end == buf.len() => {
            frame::parse_replies(&buf[f.body], results.len() as u32).ok() == Some(replies)
        }
        _ => false,
    }
}
